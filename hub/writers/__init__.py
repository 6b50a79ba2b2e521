"""How a decision or an entry reaches its system exactly once: PTW holds (`ptw_holds`), the ERP outbox (`erp_outbox`)."""
