"""SCSI emulation (SPC-4 / SBC-3) as opcode tables over a backing store."""
