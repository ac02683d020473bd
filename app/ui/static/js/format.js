// How values read on the page.

export const num = (v, digits = 3) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "—");

export function when(unixSeconds) {
  if (!unixSeconds) return "—";
  return new Date(unixSeconds * 1000).toLocaleString();
}

/** "in 3 min" for a finish time in the future; nothing once it has passed. */
export function eta(unixSeconds) {
  if (!unixSeconds) return "—";
  const s = Math.round(unixSeconds - Date.now() / 1000);
  if (s <= 0) return "any moment";
  if (s < 90) return `in ${s} s`;
  if (s < 5400) return `in ${Math.round(s / 60)} min`;
  return `in ${(s / 3600).toFixed(1)} h`;
}

export function bytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const percent = (fraction) => `${Math.round((fraction || 0) * 100)}%`;
