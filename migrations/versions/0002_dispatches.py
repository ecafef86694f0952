"""dispatches to designers (图绘) and their steps

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dispatches',
    sa.Column('dispatch_id', sa.String(length=36), nullable=False),
    sa.Column('task_id', sa.String(length=128), nullable=True),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('acc_id', sa.String(length=128), nullable=True),
    sa.Column('acc_type', sa.String(length=64), nullable=True),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('designer', sa.String(length=128), nullable=True),
    sa.Column('tuhui_task_id', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('notified_offline', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.task_id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('dispatch_id'),
    sa.UniqueConstraint('task_id')
    )
    with op.batch_alter_table('dispatches', schema=None) as batch_op:
        batch_op.create_index('ix_dispatches_next_attempt', ['next_attempt_at'], unique=False)
        batch_op.create_index('ix_dispatches_customer_status', ['customer_id', 'status', 'completed_at'],
                              unique=False)
        batch_op.create_index('ix_dispatches_designer_status', ['designer', 'status'], unique=False)

    op.create_table('dispatch_steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dispatch_id', sa.String(length=36), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['dispatch_id'], ['dispatches.dispatch_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dispatch_id', 'step', name='uq_dispatch_steps_dispatch_step')
    )


def downgrade() -> None:
    op.drop_table('dispatch_steps')
    with op.batch_alter_table('dispatches', schema=None) as batch_op:
        batch_op.drop_index('ix_dispatches_designer_status')
        batch_op.drop_index('ix_dispatches_customer_status')
        batch_op.drop_index('ix_dispatches_next_attempt')

    op.drop_table('dispatches')
