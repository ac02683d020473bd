"""The web dashboard at /ui: one HTML shell plus static CSS and JavaScript modules that call the
public REST API from the browser (docs/dashboard.md). Nothing here reads the database or sees a key."""
