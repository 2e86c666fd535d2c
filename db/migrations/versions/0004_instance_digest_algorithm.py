"""instance.digest_algorithm: the received datasets' digest becomes BLAKE3

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30 10:00:00.000000

Why: the SCP hashes every received dataset on its receive path; BLAKE3 costs about a quarter
of SHA-256's CPU there (scp/digest.py). ``instance.sha256`` keeps its name and holds the hex
digest in the new column's algorithm; rows written before keep ``sha256`` (server default),
so a node upgraded in place still recognises their identical re-sends (scp/catalog.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "digest_algorithm", sa.String(length=16), server_default="sha256", nullable=False
            )
        )


def downgrade() -> None:
    # The digests of newer rows are BLAKE3 and stay in instance.sha256: a downgraded node
    # reads them as changed on an identical re-send (replaced, never lost).
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("digest_algorithm")
