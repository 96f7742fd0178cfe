"""Files opencdp serves to websites: opencdp.js, the first-party script (see api/browser.py)."""
