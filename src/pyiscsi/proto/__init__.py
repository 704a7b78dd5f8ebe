"""Sans-IO iSCSI protocol core (RFC 7143). Never imports asyncio, never touches a socket."""
