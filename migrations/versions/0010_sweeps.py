"""sweeps, their events, the sweep columns of training jobs, and a job's "auto" search

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('base', sa.JSON(), nullable=False),
    sa.Column('search_space', sa.JSON(), nullable=False),
    sa.Column('objective', sa.String(length=40), nullable=False),
    sa.Column('n_trials', sa.Integer(), nullable=False),
    sa.Column('max_parallel', sa.Integer(), nullable=False),
    sa.Column('pruner', sa.JSON(), nullable=False),
    sa.Column('time_budget_seconds', sa.Float(), nullable=True),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('trials_created', sa.Integer(), nullable=False),
    sa.Column('advancing_until', sa.Float(), nullable=True),
    sa.Column('best', sa.JSON(), nullable=True),
    sa.Column('importance', sa.JSON(), nullable=True),
    sa.Column('final_job_id', sa.String(length=40), nullable=True),
    sa.Column('model_version_id', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('owner_key_id', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_sweeps_dataset_id_datasets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps'))
    )
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweeps_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sweeps_owner_key_id'), ['owner_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sweeps_status'), ['status'], unique=False)

    op.create_table('sweep_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('sweep_id', sa.String(length=40), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], name=op.f('fk_sweep_events_sweep_id_sweeps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweep_events'))
    )
    with op.batch_alter_table('sweep_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweep_events_sweep_id'), ['sweep_id'], unique=False)

    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('sweep_role', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('trial_number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('auto_search', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_training_jobs_sweep_id'), ['sweep_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_jobs_sweep_id'))
        batch_op.drop_column('auto_search')
        batch_op.drop_column('trial_number')
        batch_op.drop_column('sweep_role')
        batch_op.drop_column('sweep_id')
    op.drop_table('sweep_events')
    op.drop_table('sweeps')
