"""Policy data: certificate profiles (``profiles/``) and security levels (``levels/``)."""
