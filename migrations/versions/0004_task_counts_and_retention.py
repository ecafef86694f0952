"""task counts kept beside the tasks (deltas folded by beat), and the retention index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:00:00

The counts start from what the tables hold: stop every process but `release` while it runs (systemd
and compose do), or run `recount` afterwards (docs/operations.md). Building the index reads the whole
tasks table (seconds per million rows on PostgreSQL).
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'task_count_deltas',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('from_status', sa.String(length=16), nullable=True),
        sa.Column('to_status', sa.String(length=16), nullable=True),
        sa.Column('trigger_type', sa.String(length=32), nullable=True),
        sa.Column('tasks', sa.Integer(), nullable=False),
        sa.Column('callbacks', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'task_counts',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_index('ix_tasks_status_updated', 'tasks', ['status', 'updated_at'])
    # The totals start from the tables ('received' counts the tasks there are; 'entered' starts at 0).
    op.execute("INSERT INTO task_counts (name, n) SELECT 'status:' || status, count(*) FROM tasks GROUP BY status")
    op.execute("INSERT INTO task_counts (name, n) "
               "SELECT 'trigger:' || trigger_type, count(*) FROM tasks GROUP BY trigger_type")
    op.execute("INSERT INTO task_counts (name, n) SELECT 'received', count(*) FROM tasks")
    op.execute("INSERT INTO task_counts (name, n) SELECT 'callbacks', count(*) FROM callback_outbox")


def downgrade() -> None:
    op.drop_index('ix_tasks_status_updated', table_name='tasks')
    op.drop_table('task_counts')
    op.drop_table('task_count_deltas')
