#!/usr/bin/env python3
"""PDF signing speed: kyso's warm signer against stock pyHanko, same key and file, one run.

A temporary home and CA are created, one staff certificate is issued (RSA-2048 by default,
the key the domain note measured), and a 2-page dossier is signed in alternating rounds by

* **stock**: ``SimpleSigner.load_pkcs12`` once, then ``signers.sign_pdf`` per document with
  PAdES, as pyHanko's documentation shows;
* **kyso**: ``kyso.signing.setup.load_signer`` once, then ``PdfSigner.sign`` per document
  (same PAdES B-B signature, same key, same file).

Both outputs are checked to verify before timing. The verdict compares median per-round
rates: kyso must be at least 10× faster. Run ``python3 bench/pdf_sign.py [--rounds N]``.
Timing only; the temporary home is deleted at the end.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_ca import P12, staff_signer
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter

from kyso.clock import SystemClock
from kyso.pki.crl import publish_crl
from kyso.signing.sample import sample_pdf
from kyso.signing.setup import build_verifier, load_signer
from kyso.signing.sign import SignRequest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--key", choices=["rsa-2048", "ec-p256"], default="rsa-2048")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup = staff_signer(Path(tmp), args.key)
        kyso, ca, p12 = setup.kyso, setup.ca, setup.p12
        p12_path = Path(tmp) / "staff.p12"
        p12_path.write_bytes(p12)
        pdf = sample_pdf(pages=2)

        stock = signers.SimpleSigner.load_pkcs12(str(p12_path), passphrase=P12.encode())
        meta = signers.PdfSignatureMetadata(field_name="Signature1",
                                            subfilter=SigSeedSubFilter.PADES)

        def stock_sign() -> bytes:
            out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=stock)
            return bytes(out.getvalue())

        ours = load_signer(p12, P12, SystemClock())

        def kyso_sign() -> bytes:
            return ours.sign(pdf, SignRequest()).data

        for name in ("root", "staff"):
            publish_crl(kyso, ca, name)
        verifier = build_verifier(SystemClock(), kyso=kyso)
        for name, fn in (("stock", stock_sign), ("kyso", kyso_sign)):
            report = verifier.verify(fn())
            if not report.passed:
                print(f"{name} output does not verify: {report.reasons}", file=sys.stderr)
                return 1

        rates: dict[str, list[float]] = {"stock": [], "kyso": []}
        for _ in range(args.rounds):
            for name, fn in (("stock", stock_sign), ("kyso", kyso_sign)):
                start = time.perf_counter()
                for _ in range(args.per_round):
                    fn()
                rates[name].append(args.per_round / (time.perf_counter() - start))
        kyso.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["kyso"] / med["stock"]
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, "
          f"key {args.key}, 2-page dossier, {args.rounds}×{args.per_round} signatures each")
    for k in ("stock", "kyso"):
        print(f"  {k:5}  {med[k]:8.1f} signatures/s   {1000 / med[k]:7.2f} ms/signature")
    print(f"  ratio kyso/stock: {ratio:.1f}×  (target ≥ 10×: {'met' if ratio >= 10 else 'MISSED'})")
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
