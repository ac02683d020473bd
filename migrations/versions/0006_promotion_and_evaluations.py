"""promotion gates (job policy, version verdict, the `default` alias) and stored evaluations

Existing models keep serving what unpinned callers got before: the `default` alias is set to the
version the `latest` alias named, else to the highest version. Their versions keep status `ready`
(registered before gates existed: never judged).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""
import time

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('training_jobs') as batch:
        batch.add_column(sa.Column('promotion', sa.JSON(), nullable=True))
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('promotion', sa.JSON(), nullable=True))
    op.create_table('model_evaluations',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('version_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('owner_key_id', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_model_evaluations_version_id_model_versions'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_evaluations'))
    )
    op.create_index(op.f('ix_model_evaluations_version_id'), 'model_evaluations', ['version_id'], unique=False)

    # Unpinned callers now get the `default` alias: point it where they were served until now.
    conn = op.get_bind()
    aliases = sa.table('model_aliases', sa.column('model_name', sa.String), sa.column('alias', sa.String),
                       sa.column('version_id', sa.String), sa.column('updated_at', sa.Float))
    versions = sa.table('model_versions', sa.column('id', sa.String), sa.column('model_name', sa.String),
                        sa.column('version', sa.Integer))
    named = {(m, a): v for m, a, v in conn.execute(sa.select(aliases.c.model_name, aliases.c.alias, aliases.c.version_id))}
    highest: dict[str, tuple[int, str]] = {}
    for vid, model, number in conn.execute(sa.select(versions.c.id, versions.c.model_name, versions.c.version)):
        if model not in highest or number > highest[model][0]:
            highest[model] = (number, vid)
    now = time.time()
    rows = [{"model_name": model, "alias": "default", "version_id": named.get((model, "latest"), vid), "updated_at": now}
            for model, (_, vid) in highest.items() if (model, "default") not in named]
    if rows:
        op.bulk_insert(aliases, rows)


def downgrade() -> None:
    op.drop_index(op.f('ix_model_evaluations_version_id'), table_name='model_evaluations')
    op.drop_table('model_evaluations')
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('promotion')
    with op.batch_alter_table('training_jobs') as batch:
        batch.drop_column('promotion')
