"""owners: datasets, training jobs and models record the API key that created them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Existing rows go to the first live admin key (the oldest), or stay NULL when there is none: a row
without an owner is visible to admin keys only (and to everyone while auth is off).
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

OWNED = ('datasets', 'training_jobs', 'models')


def upgrade() -> None:
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('owner_key_id', sa.String(length=40), nullable=True))
            batch.create_index(batch.f(f'ix_{table}_owner_key_id'), ['owner_key_id'], unique=False)
    op.create_index(op.f('ix_idempotency_keys_created_at'), 'idempotency_keys', ['created_at'], unique=False)
    first_admin = op.get_bind().execute(sa.text(
        "SELECT id FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL ORDER BY created_at, id LIMIT 1")).scalar()
    if first_admin is not None:
        for table in OWNED:
            op.execute(sa.text(f"UPDATE {table} SET owner_key_id = :key").bindparams(key=first_admin))


def downgrade() -> None:
    op.drop_index(op.f('ix_idempotency_keys_created_at'), table_name='idempotency_keys')
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(batch.f(f'ix_{table}_owner_key_id'))
            batch.drop_column('owner_key_id')
