"""Ceph client bindings (ctypes over librados.so.2 / librbd.so.1, no compiled module).

Importing the package never needs Ceph installed; the libraries are loaded on first use and
:class:`~pyiscsi.ceph.errors.CephUnavailable` says what to install when they are absent.
"""
