"""Zero-knowledge attestation of a venue's book: prove its health without revealing accounts.

``book`` reads the accounts at a block from the engine's outputs; ``tree`` lays them out as a
Merkle-sum tree; ``build`` proves it (circom circuits in ``circuits/``, snarkjs via
``toolchain``) and writes the public attestation and the private openings; ``verify`` checks
both. The command line is ``predliq attest`` and ``predliq verify``.
"""
