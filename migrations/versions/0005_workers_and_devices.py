"""workers, job devices, per-attempt checkpoints

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workers',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('device', sa.String(length=10), nullable=False),
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=300), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_workers'))
    )
    op.create_index(op.f('ix_workers_last_seen'), 'workers', ['last_seen'], unique=False)
    with op.batch_alter_table('training_jobs') as batch:
        batch.add_column(sa.Column('device', sa.String(length=10), server_default='cpu', nullable=False))
        batch.add_column(sa.Column('sent_at', sa.Float(), nullable=True))
    with op.batch_alter_table('job_checkpoints') as batch:
        batch.add_column(sa.Column('attempt', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('job_checkpoints') as batch:
        batch.drop_column('attempt')
    with op.batch_alter_table('training_jobs') as batch:
        batch.drop_column('sent_at')
        batch.drop_column('device')
    op.drop_index(op.f('ix_workers_last_seen'), table_name='workers')
    op.drop_table('workers')
