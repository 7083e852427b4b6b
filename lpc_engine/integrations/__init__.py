"""LPC inside other training frameworks; each module needs its framework's
pip extra and is imported only by those who use it (lightning.py:
`pip install 'lpc-studio[lightning]'`)."""
