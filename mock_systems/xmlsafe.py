"""The one XML parser every mock uses: no entities, no network, no DTDs, no huge trees."""

from __future__ import annotations

from lxml import etree


def hardened_parser() -> etree.XMLParser:
    # A fresh parser per use: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
