"""inbound messages (for the console, explain and re-driven matching); a task's re-arm time and attempt base

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inbound_messages',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('msg_id', sa.String(length=128), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('acc_id', sa.String(length=128), nullable=True),
        sa.Column('from_id', sa.String(length=128), nullable=True),
        sa.Column('from_name', sa.String(length=128), nullable=True),
        sa.Column('msg_type', sa.String(length=32), nullable=True),
        sa.Column('content', sa.Text(), nullable=True),
        sa.Column('event', sa.String(length=128), nullable=True),
        sa.Column('data', sa.JSON(), nullable=True),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.Column('enqueued_at', sa.DateTime(), nullable=True),
        sa.Column('matched_at', sa.DateTime(), nullable=True),
        sa.Column('fired', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'msg_id', name='uq_inbound_source_msg_id'),
    )
    op.create_index('ix_inbound_customer_received', 'inbound_messages', ['from_id', 'received_at'])
    op.create_index('ix_inbound_received', 'inbound_messages', ['received_at'])
    op.create_index('ix_inbound_unmatched', 'inbound_messages', ['matched_at', 'enqueued_at'])
    with op.batch_alter_table('tasks') as batch:
        batch.add_column(sa.Column('armed_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('attempt_base', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('tasks') as batch:
        batch.drop_column('attempt_base')
        batch.drop_column('armed_at')
    op.drop_index('ix_inbound_unmatched', table_name='inbound_messages')
    op.drop_index('ix_inbound_received', table_name='inbound_messages')
    op.drop_index('ix_inbound_customer_received', table_name='inbound_messages')
    op.drop_table('inbound_messages')
