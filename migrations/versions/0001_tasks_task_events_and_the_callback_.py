"""tasks, task events and the callback outbox

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 17:19:15.938628
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tasks',
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=True),
    sa.Column('customer_name', sa.String(length=128), nullable=True),
    sa.Column('specified_customer_id', sa.String(length=128), nullable=True),
    sa.Column('specified_customer_name', sa.String(length=128), nullable=True),
    sa.Column('trigger_type', sa.String(length=32), nullable=False),
    sa.Column('trigger_keyword', sa.Text(), nullable=True),
    sa.Column('trigger_keywords', sa.JSON(), nullable=True),
    sa.Column('action_type', sa.String(length=32), nullable=False),
    sa.Column('action_file_url', sa.Text(), nullable=True),
    sa.Column('action_message', sa.Text(), nullable=True),
    sa.Column('priority', sa.String(length=8), nullable=False),
    sa.Column('timeout_hours', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('retry_count', sa.Integer(), nullable=False),
    sa.Column('max_retry', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('triggered_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('acc_id', sa.String(length=128), nullable=True),
    sa.Column('trigger', sa.JSON(), nullable=False),
    sa.Column('action', sa.JSON(), nullable=False),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('triggered_by', sa.JSON(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('progress', sa.JSON(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('task_id')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_tasks_status_due', ['status', 'due_at'], unique=False)
        batch_op.create_index('ix_tasks_status_expires', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_tasks_status_lease', ['status', 'lease_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_trigger_type'), ['trigger_type'], unique=False)

    op.create_table('callback_outbox',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.task_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('callback_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_outbox_task_id'), ['task_id'], unique=False)
        batch_op.create_index('ix_outbox_state_next', ['state', 'next_attempt_at'], unique=False)

    op.create_table('task_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.task_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('task_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_events_task_id'), ['task_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('task_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_events_task_id'))

    op.drop_table('task_events')
    with op.batch_alter_table('callback_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_state_next')
        batch_op.drop_index(batch_op.f('ix_callback_outbox_task_id'))

    op.drop_table('callback_outbox')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_trigger_type'))
        batch_op.drop_index('ix_tasks_status_lease')
        batch_op.drop_index('ix_tasks_status_expires')
        batch_op.drop_index('ix_tasks_status_due')
        batch_op.drop_index(batch_op.f('ix_tasks_customer_id'))

    op.drop_table('tasks')
