"""a dataset's and a model version's target teacher (translation between teachers)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('datasets', sa.Column('target_teacher', sa.String(length=200), nullable=True))
    op.add_column('model_versions', sa.Column('target_teacher', sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column('model_versions', 'target_teacher')
    op.drop_column('datasets', 'target_teacher')
