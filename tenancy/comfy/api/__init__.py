"""The plugin's own HTTP API under /tenancy/: sessions, who am I, downloads, operations, OpenID sign-in and the
operators' admin API."""
