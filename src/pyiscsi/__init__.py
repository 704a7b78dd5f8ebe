"""pyiscsi: an iSCSI target and initiator with tag-steered direct data placement."""

__version__ = "0.1.0"
