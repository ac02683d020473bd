"""descriptions and tags on models, versions and jobs; a model's highest version number ever given

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('models', 'model_versions', 'training_jobs'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('description', sa.Text(), nullable=True))
            batch.add_column(sa.Column('tags', sa.JSON(), nullable=True))
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('highest_version', sa.Integer(), server_default='0', nullable=False))
    # Deleting a version must not free its number: start from the versions that exist.
    op.execute('UPDATE models SET highest_version = (SELECT COALESCE(MAX(v.version), 0) FROM model_versions v '
               'WHERE v.model_name = models.name)')


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_column('highest_version')
    for table in ('training_jobs', 'model_versions', 'models'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('tags')
            batch.drop_column('description')
