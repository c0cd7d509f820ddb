"""Cells that a spreadsheet would run as a formula (CSV/formula injection, OWASP): neutralised for export.

A cell starting with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, LibreOffice and Google Sheets; a leading
tab or carriage return is stripped by some of them, after which the next character counts. Such a cell gets a
leading apostrophe, which spreadsheets show as text and never evaluate. The exporter and the verifier of an export
share this one rule, so a verifier can tell a neutralised cell from a tampered one.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell
