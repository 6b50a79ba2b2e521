"""Mock PTW, EAM, MES and ERP systems speaking the vendor protocols of docs/protocols.md.

The EAM and the MES also come in a second vendor flavor (`eam_oslc`: Maximo OSLC JSON,
`mes_odata`: SAP OData v2) that serves the same fixture plant, and the real vendor services
ride on those servers and the ERP's: Maximo's REST API (`eam_maximo`), S/4HANA's standard OData
services (`mes_s4`) and SAP's journal-entry SOAP service (`erp_soap`).

Standalone on purpose: nothing here imports `hub`, so the mocks test the hub's connectors
against the wire contract rather than against the hub's own idea of it.
"""

from .servers import RunningSystems, start_systems

__all__ = ["RunningSystems", "start_systems"]
