"""transform jobs and their events

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('transform_jobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=True),
    sa.Column('input_key', sa.String(length=300), nullable=False),
    sa.Column('input_format', sa.String(length=16), nullable=False),
    sa.Column('input_kind', sa.String(length=16), nullable=False),
    sa.Column('input_bytes', sa.BigInteger(), nullable=False),
    sa.Column('num_rows', sa.Integer(), nullable=False),
    sa.Column('dim_in', sa.Integer(), nullable=False),
    sa.Column('dim_out', sa.Integer(), nullable=False),
    sa.Column('normalize', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('device', sa.String(length=10), server_default='cpu', nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('sent_at', sa.Float(), nullable=True),
    sa.Column('heartbeat_at', sa.Float(), nullable=True),
    sa.Column('rows_done', sa.Integer(), nullable=False),
    sa.Column('estimated_finish', sa.Float(), nullable=True),
    sa.Column('result_key', sa.String(length=300), nullable=True),
    sa.Column('result_bytes', sa.BigInteger(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('cancel_requested_at', sa.Float(), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('owner_key_id', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_transform_jobs_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                            name=op.f('fk_transform_jobs_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transform_jobs'))
    )
    op.create_index(op.f('ix_transform_jobs_dataset_id'), 'transform_jobs', ['dataset_id'], unique=False)
    op.create_index(op.f('ix_transform_jobs_status'), 'transform_jobs', ['status'], unique=False)
    op.create_index(op.f('ix_transform_jobs_owner_key_id'), 'transform_jobs', ['owner_key_id'], unique=False)
    op.create_table('transform_job_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['transform_jobs.id'], name=op.f('fk_transform_job_events_job_id_transform_jobs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transform_job_events'))
    )
    op.create_index(op.f('ix_transform_job_events_job_id'), 'transform_job_events', ['job_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_transform_job_events_job_id'), table_name='transform_job_events')
    op.drop_table('transform_job_events')
    op.drop_index(op.f('ix_transform_jobs_owner_key_id'), table_name='transform_jobs')
    op.drop_index(op.f('ix_transform_jobs_status'), table_name='transform_jobs')
    op.drop_index(op.f('ix_transform_jobs_dataset_id'), table_name='transform_jobs')
    op.drop_table('transform_jobs')
