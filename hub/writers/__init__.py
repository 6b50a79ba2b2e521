"""How a decision or an entry reaches its system exactly once (PTW holds; the ERP outbox lives in hub/assets/erp.py)."""
