"""The deletion ledger: an append-only, hash-chained SQLite table of certificates, optionally signed.

Each entry holds its sequence number (1, 2, ...), a certificate (:mod:`expunge.deletion.certificate`), the previous
entry's hash (64 zeros for the first) and its own hash: SHA-256 over the canonical JSON of ``{"seq", "certificate",
"previous_hash"}`` (:func:`entry_hash`). Appending with a key (a PEM Ed25519 private key; the optional
``cryptography`` package) adds an Ed25519 signature over ``b"expunge-ledger/1\n"`` followed by the 32 bytes of the
entry hash (:func:`signed_message`; the prefix keeps these signatures from being valid for anything else).

Appends are serialised across processes: each runs in one ``BEGIN IMMEDIATE`` transaction that reads the head
(the last entry) inside it, so two processes can never chain onto the same entry; waiting for the lock has a busy
timeout. Triggers refuse UPDATE and DELETE on the entries, and the head (sequence number and hash) is also kept in a
metadata table.

:meth:`Ledger.verify` recomputes every entry's hash and the chain from the first entry, so editing any field,
deleting, inserting or reordering entries is reported, one line per problem; so is a certificate not stored in
canonical JSON, and an entry whose ``previous_request`` is not an earlier entry whose output model is its input
model. With a public key, every entry must carry a signature that verifies with it (a signed ledger verifies only
with its key; an unsigned entry fails when a key is given, and a signed one when none is). With a models directory,
every entry's output model must be found there and hash to what its certificate records: beside a
``certificate.json`` of that request (every ``certificate.json`` under the directory is checked against the ledger),
or, for a directory holding the models directly, by its hash. An attacker who rewrites the whole chain of an
unsigned ledger, or removes its newest entries and its recorded head with them (even of a signed ledger), is caught
only by a head hash kept elsewhere (``verify`` prints it; ``verify(head=...)``) or a known number of entries
(``expect_entries``): keep the private key away from the ledger.

Location: the ``path`` argument; the command line's default is ``$EXPUNGE_LEDGER``, else ``~/.expunge/ledger.db``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .certificate import _HEX64, JSON_NAME, canonical_json, check_certificate, load_json, manifest_sha256, model_files

FORMAT = "expunge-ledger/1"
GENESIS = "0" * 64
BUSY_SECONDS = 60.0
ENV_VAR = "EXPUNGE_LEDGER"
SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_CERTIFICATE_FILE = 64 * 2**20
SIGNATURE_DOMAIN = FORMAT.encode() + b"\n"     # signed before each entry hash
MOVE_SEARCH = 100          # an entry whose hash fails is looked for at positions this far away (reordered)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_entries (seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL, "
    "output_sha256 TEXT NOT NULL, certificate TEXT NOT NULL, previous_hash TEXT NOT NULL, entry_hash TEXT NOT NULL, "
    "signature TEXT, key_id TEXT)",
    "CREATE INDEX IF NOT EXISTS ledger_output ON ledger_entries (output_sha256)",
    "CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: entries cannot be changed'); END",
    "CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: entries cannot be deleted'); END",
)
_COLUMNS = "seq, request_id, output_sha256, certificate, previous_hash, entry_hash, signature, key_id"


def default_path() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".expunge" / "ledger.db"


def entry_hash(seq: int, certificate: dict, previous_hash: str) -> str:
    """SHA-256 (hex) over the canonical JSON of the entry's sequence number, certificate and previous hash."""
    return hashlib.sha256(canonical_json({"seq": seq, "certificate": certificate,
                                          "previous_hash": previous_hash})).hexdigest()


def signed_message(digest: str) -> bytes:
    """What an entry's Ed25519 signature covers: ``b"expunge-ledger/1\n"`` and the 32 bytes of its hash."""
    return SIGNATURE_DOMAIN + bytes.fromhex(digest)


@dataclass(frozen=True)
class Entry:
    """One ledger entry, as stored."""
    seq: int
    request_id: str
    certificate: dict
    previous_hash: str
    entry_hash: str
    signature: str | None = None      # Ed25519 over signed_message(entry_hash), hex
    key_id: str | None = None         # the signing key's id (:func:`key_id`)

    @property
    def signed(self) -> bool:
        return self.signature is not None


@dataclass(frozen=True)
class _Row:
    seq: int
    request_id: str
    output_sha256: str
    certificate: str
    previous_hash: str
    entry_hash: str
    signature: str | None
    key_id: str | None


# ------------------------------------------------------------------------------------------------------- keys
def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ValueError("signing and checking ledger signatures needs the cryptography package "
                         "(pip install cryptography)") from None
    return serialization, ed25519


def _read_pem(path: str | os.PathLike, what: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{what} {p} not found; expected a PEM file (make a pair with expunge ledger keygen)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValueError(f"{what} {p} cannot be read ({e.strerror})") from None
    if b"-----BEGIN" not in data[:4096]:
        raise ValueError(f"{what} {p} is not a PEM key file (make a pair with expunge ledger keygen)")
    return data


def load_private_key(path: str | os.PathLike) -> Any:
    """An Ed25519 private key from an unencrypted PEM file; ValueError naming the problem."""
    serialization, ed25519 = _crypto()
    data = _read_pem(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"private key {path} is encrypted; expunge reads unencrypted PEM keys (protect the file "
                         "with its permissions instead)") from None
    except Exception as e:  # noqa: BLE001 - cryptography raises several kinds for bad PEM
        if b"PUBLIC KEY" in data[:4096]:
            raise ValueError(f"{path} is a public key; signing needs the private key") from None
        raise ValueError(f"private key {path} cannot be read as a PEM private key ({type(e).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"private key {path} is a {type(key).__name__.replace('_', '')}; the ledger is signed with "
                         "Ed25519 keys (make one with expunge ledger keygen)")
    return key


def load_public_key(path: str | os.PathLike) -> Any:
    """An Ed25519 public key from a PEM file (a private key file gives its public key)."""
    serialization, ed25519 = _crypto()
    data = _read_pem(path, "public key")
    if b"PRIVATE KEY" in data[:4096]:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as e:  # noqa: BLE001 - cryptography raises several kinds for bad PEM
        raise ValueError(f"public key {path} cannot be read as a PEM public key ({type(e).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(f"public key {path} is a {type(key).__name__}; the ledger is signed with Ed25519 keys")
    return key


def key_id(public_key: Any) -> str:
    """A short id of a public key: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike) -> str:
    """Write a new Ed25519 key pair as PEM files (the private one readable by its owner only); returns the key id.
    Refuses to replace an existing file."""
    from ..modelio import atomic_write

    serialization, ed25519 = _crypto()
    priv, pub = Path(private_path).expanduser(), Path(public_path).expanduser()
    if priv.resolve() == pub.resolve():
        raise ValueError("the private and the public key need two different files")
    for p in (priv, pub):
        if p.exists():
            raise ValueError(f"{p} exists; refusing to replace a key file (give a new name)")
        if not p.parent.is_dir():
            raise ValueError(f"directory {p.parent} does not exist")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write(pub, public_pem)
    except BaseException:
        priv.unlink(missing_ok=True)
        raise
    return key_id(key.public_key())


# ----------------------------------------------------------------------------------------------------- ledger
class Ledger:
    """The ledger in the SQLite file ``path``, created by the first :meth:`append`; reading creates nothing.

    Each operation opens its own connection, so one ``Ledger`` may be used from several threads and the file from
    several processes."""

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"a ledger path must be a file path; got {type(path).__name__}")
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ValueError(f"ledger {self.path} is a directory; expected a SQLite file")

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # --------------------------------------------------------------------------------------------- connections
    def _check_file(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise ValueError(f"ledger {self.path} cannot be read ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise ValueError(f"ledger {self.path} is not a SQLite database; give a new path or an expunge ledger")

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        """A connection in autocommit mode with a busy timeout; None when the file does not exist and ``create``
        is false."""
        if self.path.exists():
            self._check_file()
        elif not create:
            yield None
            return
        elif not self.path.parent.is_dir():
            raise ValueError(f"ledger {self.path}: directory {self.path.parent} does not exist")
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        except sqlite3.Error as e:
            raise ValueError(f"ledger {self.path} cannot be opened ({e})") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
            yield db
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
                raise
            raise ValueError(f"ledger {self.path} cannot be read as a SQLite database ({e})") from None
        finally:
            db.close()

    def _tables(self, db: sqlite3.Connection, check_format: bool = True) -> set[str]:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if names and "ledger_entries" not in names:
            raise ValueError(f"{self.path} is a SQLite database but not an expunge ledger (it holds "
                             f"{', '.join(sorted(names)[:3])}); give another --ledger")
        if names and check_format:
            fmt = db.execute("SELECT value FROM ledger_meta WHERE key = 'format'").fetchone() \
                if "ledger_meta" in names else None
            if fmt is None or fmt[0] != FORMAT:
                raise ValueError(f"ledger {self.path} has format {fmt[0] if fmt else None!r}; this expunge reads "
                                 f"{FORMAT!r}")
        return names

    def _rows(self) -> list[_Row]:
        return self._read()[0]

    def _read(self, check_format: bool = True) -> tuple[list[_Row], dict[str, str]]:
        """Every entry row, in sequence order, and the metadata, read in one transaction."""
        with self._connect(create=False) as db:
            if db is None:
                return [], {}
            db.execute("BEGIN")
            try:
                names = self._tables(db, check_format)
                if not names:
                    return [], {}
                rows = db.execute(f"SELECT {_COLUMNS} FROM ledger_entries ORDER BY seq").fetchall()
                meta = dict(db.execute("SELECT key, value FROM ledger_meta").fetchall()) \
                    if "ledger_meta" in names else {}
            finally:
                db.execute("COMMIT")
        return [_Row(*r) for r in rows], {str(k): str(v) for k, v in meta.items()}

    # ----------------------------------------------------------------------------------------------- writing
    def append(self, cert: dict, key: Path | None = None) -> Entry:
        """Append ``cert`` as the next entry, chained to the current last one and, with ``key`` (a PEM Ed25519
        private key file), signed. The certificate and the key are checked before the ledger is touched; a request
        id already in the ledger is refused."""
        check_certificate(cert)
        cert = json.loads(canonical_json(cert))        # exactly what a later read gives back
        private = load_private_key(key) if key is not None else None
        signer_id = key_id(private.public_key()) if private is not None else None
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                with self._connect(create=True) as db:
                    db.execute("BEGIN IMMEDIATE")      # the write lock first, then the head: the chain cannot fork
                    try:
                        entry = self._append_locked(db, cert, private, signer_id)
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                    return entry
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise ValueError(f"ledger {self.path}: cannot append ({e})") from None
                time.sleep(0.01)

    def _append_locked(self, db: sqlite3.Connection, cert: dict, private: Any, signer_id: str | None) -> Entry:
        if not self._tables(db):
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT INTO ledger_meta (key, value) VALUES ('format', ?)", (FORMAT,))
        last = db.execute("SELECT seq, entry_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1").fetchone()
        meta = dict(db.execute("SELECT key, value FROM ledger_meta").fetchall())
        recorded = (int(meta["head_seq"]) if str(meta["head_seq"]).isdigit() else -1, meta.get("head_hash")) \
            if "head_seq" in meta else (0, GENESIS)
        seq, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
        if (seq - 1, previous) != recorded:
            raise ValueError(f"ledger {self.path} is damaged (its last entry is {seq - 1}, its recorded head "
                             f"{recorded[0]}); run expunge ledger verify before appending")
        request_id = cert["request_id"]
        if db.execute("SELECT 1 FROM ledger_entries WHERE request_id = ?", (request_id,)).fetchone():
            raise ValueError(f"request {request_id!r} is already in ledger {self.path}; each request id once")
        digest = entry_hash(seq, cert, previous)
        signature = private.sign(signed_message(digest)).hex() if private is not None else None
        db.execute(f"INSERT INTO ledger_entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (seq, request_id, cert["output_model"]["sha256"], canonical_json(cert).decode(), previous,
                    digest, signature, signer_id))
        db.executemany("INSERT OR REPLACE INTO ledger_meta (key, value) VALUES (?, ?)",
                       [("head_seq", str(seq)), ("head_hash", digest)])
        return Entry(seq, request_id, cert, previous, digest, signature, signer_id)

    # ----------------------------------------------------------------------------------------------- reading
    def entries(self) -> list[Entry]:
        """Every entry, in sequence order (none when the file does not exist)."""
        return [self._entry(r) for r in self._rows()]

    def _entry(self, row: _Row) -> Entry:
        try:
            cert = load_json(row.certificate)
        except (ValueError, RecursionError, TypeError):
            raise ValueError(f"ledger {self.path}: entry {row.seq}'s certificate is not valid JSON (the ledger was "
                             "changed outside expunge; run expunge ledger verify)") from None
        return Entry(row.seq, row.request_id, cert, row.previous_hash, row.entry_hash, row.signature, row.key_id)

    def get(self, entry_id: int | str) -> Entry:
        """The entry with sequence number ``entry_id``, or request id ``entry_id`` (or a unique prefix of one)."""
        rows = self._rows()
        if isinstance(entry_id, bool) or not isinstance(entry_id, (int, str)) or entry_id == "":
            raise ValueError(f"an entry is named by its number or its request id; got {entry_id!r}")
        found = [r for r in rows if r.request_id == entry_id]
        if not found and (isinstance(entry_id, int) or entry_id.isdigit()):
            found = [r for r in rows if r.seq == int(entry_id)]
        if not found and isinstance(entry_id, str):
            found = [r for r in rows if r.request_id.startswith(entry_id)]
            if len(found) > 1:
                raise ValueError(f"{entry_id!r} names {len(found)} requests in ledger {self.path} "
                                 f"({', '.join(r.request_id for r in found[:3])}, ...); give more of the id")
        if not found:
            raise ValueError(f"no entry {entry_id!r} in ledger {self.path} (it holds {len(rows)} entries; name one "
                             "by number or request id)")
        return self._entry(found[0])

    def find_by_output_hash(self, sha: str) -> Entry | None:
        """The latest entry whose output model has aggregate hash ``sha`` (``certificate.file_sha256``), or None: the
        request that produced a model a new request starts from."""
        with self._connect(create=False) as db:
            if db is None or not self._tables(db):
                return None
            row = db.execute(f"SELECT {_COLUMNS} FROM ledger_entries WHERE output_sha256 = ? ORDER BY seq DESC "
                             "LIMIT 1", (sha,)).fetchone()
        return self._entry(_Row(*row)) if row else None

    def head(self) -> str:
        """The last entry's hash (64 zeros for an empty ledger): keep it elsewhere to detect a rewritten ledger."""
        rows = self._rows()
        return rows[-1].entry_hash if rows else GENESIS

    # ---------------------------------------------------------------------------------------------- checking
    def verify(self, models: Path | None = None, public_key: Path | None = None, head: str | None = None,
               expect_entries: int | None = None) -> list[str]:
        """Every problem found, one line each ([] when the ledger is intact): each entry's hash recomputed from its
        content (stored as canonical JSON), the chain of previous hashes and the sequence numbers, the recorded
        head, each entry's link to the request it follows, the signatures against ``public_key`` (a PEM Ed25519
        public key) and, with ``models`` (a directory), every entry's output model found there against its
        certificate (and every ``certificate.json`` there against the ledger). ``head``: a head hash kept elsewhere
        (what verify printed earlier); the ledger must still hold that entry (entries appended since are fine).
        ``expect_entries``: the ledger must hold at least that many entries. Both catch a ledger whose newest
        entries were removed together with its recorded head, which the chain and the signatures cannot.
        ValueError for bad input (no ledger file, an unreadable key, a models path that is not a directory, a head
        that is not a hash), before any check."""
        if not self.path.exists():
            raise ValueError(f"no ledger at {self.path}")
        if models is not None and not Path(models).expanduser().is_dir():
            raise ValueError(f"models directory {models} not found; --models takes a directory holding the output "
                             "models (each beside its certificate.json, or directly in it)")
        if head is not None and (not isinstance(head, str) or not _HEX64.fullmatch(head)):
            raise ValueError(f"head must be a ledger head hash (64 lowercase hex digits, as verify prints it); got "
                             f"{str(head)[:80]!r}")
        if expect_entries is not None and (isinstance(expect_entries, bool) or not isinstance(expect_entries, int)
                                           or expect_entries < 0):
            raise ValueError(f"expected entries must be a whole number >= 0; got {expect_entries!r}")
        public = load_public_key(public_key) if public_key is not None else None
        given_id = key_id(public) if public is not None else None
        rows, meta = self._read(check_format=False)
        problems: list[str] = []
        if meta.get("format") != FORMAT:
            problems.append(f"the ledger's format is recorded as {meta.get('format')!r}, not {FORMAT!r}: its metadata "
                            "was edited (or it was written by another version of expunge)")
        certs: dict[int, dict] = {}
        earlier: dict[str, dict] = {}          # request id -> certificate, of the intact entries before this one
        unreadable: set[str | None] = set()     # request ids of the entries before this one that failed their
                                                # checks (None: some entries are missing)
        previous_seq, previous_hash = 0, GENESIS
        for row in rows:
            label = f"entry {row.seq} (request {row.request_id})"
            if row.seq <= previous_seq:
                where = f"after entry {previous_seq}" if previous_seq else "before entry 1"
                problems.append(f"{label}: its number does not follow the entry before it: an entry was inserted "
                                f"{where}")
                continue
            if row.seq != previous_seq + 1:
                gone = (f"entry {previous_seq + 1} is missing" if row.seq == previous_seq + 2 else
                        f"entries {previous_seq + 1} to {row.seq - 1} are missing")
                problems.append(f"{gone}: the ledger goes from entry {previous_seq} to entry {row.seq} "
                                "(entries were deleted)")
                unreadable.add(None)          # the entries deleted may be the ones later entries follow
            own_ok = self._check_content(row, label, rows, problems, certs)
            if own_ok and row.previous_hash != previous_hash:
                problems.append(f"{label}: its previous hash is not entry {previous_seq}'s hash: the chain is broken "
                                "(an entry before it was deleted, inserted or rewritten)")
            problems += _signature_problems(row, label, public, given_id)
            if own_ok:
                problems += _link_problems(certs[row.seq], label, earlier, unreadable)
                earlier.setdefault(certs[row.seq]["request_id"], certs[row.seq])
            else:
                unreadable.add(row.request_id)
            previous_seq, previous_hash = row.seq, row.entry_hash
        problems += self._head_problems(rows, meta)
        if head is not None and head != GENESIS and head not in {r.entry_hash for r in rows}:
            problems.append(f"the ledger no longer holds the head {head[:16]}... kept elsewhere: entries at its end "
                            "were deleted or the ledger was rewritten")
        if expect_entries is not None and len(rows) < expect_entries:
            problems.append(f"the ledger holds {len(rows)} entries, fewer than the {expect_entries} expected: entries "
                            "were deleted")
        if models is not None:
            problems += self._model_problems(Path(models).expanduser(), rows, certs)
        return problems

    def _check_content(self, row: _Row, label: str, rows: list[_Row], problems: list[str],
                       certs: dict[int, dict]) -> bool:
        """Whether the entry's hash matches its content; records the problem (edited or moved) otherwise."""
        try:
            cert = load_json(row.certificate)
        except (ValueError, RecursionError, TypeError) as e:
            problems.append(f"{label}: its certificate is not valid JSON ({e}): edited")
            return False
        if not isinstance(cert, dict):
            problems.append(f"{label}: its certificate is not a JSON object (edited)")
            return False
        if canonical_json(cert).decode() != row.certificate:
            problems.append(f"{label}: its certificate is not stored as canonical JSON (a repeated key, spacing or "
                            "key order): edited")
            return False
        if entry_hash(row.seq, cert, row.previous_hash) != row.entry_hash:
            moved = next((r.seq for r in rows if r.seq != row.seq and abs(r.seq - row.seq) <= MOVE_SEARCH
                          and entry_hash(r.seq, cert, row.previous_hash) == row.entry_hash), None)
            if moved is not None:
                problems.append(f"{label}: holds the entry recorded as number {moved}: entries were reordered, "
                                "inserted or deleted")
            else:
                problems.append(f"{label}: its content does not match its hash: the entry was edited")
            return False
        try:
            check_certificate(cert)
        except (TypeError, ValueError) as e:
            problems.append(f"{label}: {e}")
            return False
        certs[row.seq] = cert
        if cert.get("request_id") != row.request_id:
            problems.append(f"{label}: its request id differs from its certificate's "
                            f"({cert.get('request_id')!r}): edited")
        if cert["output_model"]["sha256"] != row.output_sha256:
            problems.append(f"{label}: its output model hash differs from its certificate's: edited")
        return True

    def _head_problems(self, rows: list[_Row], meta: dict[str, str]) -> list[str]:
        last = (rows[-1].seq, rows[-1].entry_hash) if rows else (0, GENESIS)
        if "head_seq" not in meta:
            return [] if not rows else ["the ledger records no head: its metadata was edited"]
        head = (int(meta["head_seq"]) if meta["head_seq"].isdigit() else -1, meta.get("head_hash"))
        if head == last:
            return []
        if head[0] > last[0]:
            return [f"the ledger's head is entry {head[0]} but its last entry is {last[0]}: entries at its end "
                    "were deleted"]
        if head[0] < last[0]:
            return [f"the ledger's head is entry {head[0]} but its last entry is {last[0]}: entries were added "
                    "outside expunge"]
        return [f"the ledger's head hash differs from its last entry's ({last[0]}): the last entry was replaced"]

    def model_paths(self, models: Path) -> dict[int, Path]:
        """For each entry whose output model is found in ``models``, its path: beside a ``certificate.json`` of that
        request (anywhere under ``models``), else directly in ``models``, matched by its content."""
        rows = self._rows()
        certs = {}
        for row in rows:
            try:
                certs[row.seq] = check_certificate(load_json(row.certificate))
            except (ValueError, TypeError, RecursionError):
                continue
        located, _ = _survey(Path(models).expanduser(), rows, certs)
        return {seq: paths[0] for seq, paths in sorted(located.items())}

    def _model_problems(self, models: Path, rows: list[_Row], certs: dict[int, dict]) -> list[str]:
        located, problems = _survey(models, rows, certs)
        by_seq = {r.seq: r for r in rows}
        for seq, paths in sorted(located.items()):
            record = certs[seq]["output_model"]
            label = f"entry {seq} (request {by_seq[seq].request_id})"
            for path in paths:
                try:
                    files = model_files(path)
                except (OSError, ValueError) as e:
                    problems.append(f"{label}: output model {path} cannot be read ({e})")
                    continue
                found = {"name": path.name, "files": files, "sha256": manifest_sha256(files)}
                if _content_key(found) != _content_key(record):
                    recorded = record.get("files") if isinstance(record.get("files"), dict) else {}
                    changed = sorted(n for n in set(files) | set(recorded) if files.get(n) != recorded.get(n))
                    what = f"{changed[0]} changed" if changed else "its hash differs"
                    problems.append(f"{label}: output model {path} does not match its certificate ({what}): the "
                                    "model file was replaced or modified")
        return problems


def _content_key(record: Any) -> tuple | None:
    """What identifies a model's content whatever its files are named: a model file (and its sidecar) by each
    file's suffix and hash; a model directory by its aggregate hash (its files' names inside it count)."""
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return None
    files = record["files"]
    if record.get("name") in files:
        return ("file", tuple(sorted((Path(n).suffix.lower(), str(sha)) for n, sha in files.items())))
    return ("dir", record.get("sha256"))


def _record_of(path: Path) -> dict | None:
    try:
        files = model_files(path)
    except (OSError, ValueError):
        return None
    return {"name": path.name, "files": files, "sha256": manifest_sha256(files)}


def _survey(models: Path, rows: list[_Row], certs: dict[int, dict]) -> tuple[dict[int, list[Path]], list[str]]:
    """Where each intact entry's output model lies under ``models`` (each copy), and the problems met finding them.

    Every ``certificate.json`` under ``models`` must be an entry's certificate, unchanged; the output model beside
    it is that entry's. An entry with none is looked for directly in ``models`` by its content (every forget output
    is named model.safetensors, so names prove nothing); when ``models`` holds no certificate at all (models kept
    directly in it), a model file there that is no entry's output or input is reported too."""
    by_id: dict[str, int] = {}
    for row in rows:
        by_id.setdefault(row.request_id, row.seq)
    label = {r.seq: f"entry {r.seq} (request {r.request_id})" for r in rows}
    problems: list[str] = []
    located: dict[int, list[Path]] = {}
    found_any = False
    for found in sorted(models.rglob(JSON_NAME)):
        if not found.is_file():
            continue
        found_any = True
        try:
            if found.stat().st_size > MAX_CERTIFICATE_FILE:
                raise ValueError("too large")
            cert = load_json(found.read_bytes())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            problems.append(f"{found} cannot be read as a certificate ({e})")
            continue
        rid = cert.get("request_id") if isinstance(cert, dict) else None
        seq = by_id.get(rid) if isinstance(rid, str) else None
        if seq is None:
            problems.append(f"{found} names request {rid!r}, which is not in the ledger: a certificate that no entry "
                            "records (edited or forged)")
            continue
        if seq not in certs:                # the entry itself failed its checks: reported above
            continue
        if cert != certs[seq]:
            problems.append(f"{label[seq]}: {found} differs from the ledger's certificate")
        path = found.parent / certs[seq]["output_model"]["name"]
        if not path.exists():
            problems.append(f"{label[seq]}: output model {path} is missing beside {found}")
            continue
        located.setdefault(seq, []).append(path)
    missing = [seq for seq in sorted(certs) if seq not in located]
    if missing or not found_any:
        candidates = _flat_candidates(models, certs)
        by_key: dict[tuple, list[Path]] = {}
        for path, record in candidates:
            by_key.setdefault(_content_key(record), []).append(path)
        for seq in missing:
            record = certs[seq]["output_model"]
            paths = by_key.get(_content_key(record))
            if paths:
                located[seq] = paths
            else:
                problems.append(f"{label[seq]}: its output model ({record['name']}, sha256 {record['sha256'][:16]}...) "
                                f"is not in {models}: it was replaced, modified or removed")
        if not found_any:
            known = {_content_key(c.get(role)) for c in certs.values() for role in ("output_model", "input_model")}
            problems += [f"{path} is no model the ledger records (no entry's output or input): a replaced or modified "
                         "model" for path, record in candidates if path.is_file() and _content_key(record) not in known]
    return located, problems


def _flat_candidates(models: Path, certs: dict[int, dict]) -> list[tuple[Path, dict]]:
    """The models kept directly in ``models``: files with a suffix some entry's output model has (a
    ``.safetensors`` file with its sidecar), and subdirectories when some output model is a directory."""
    suffixes, directories = set(), False
    for cert in certs.values():
        key = _content_key(cert["output_model"])
        if key and key[0] == "file":
            suffixes.add(Path(cert["output_model"]["name"]).suffix.lower())
        else:
            directories = True
    out = []
    for path in sorted(models.iterdir()):
        if (path.is_file() and path.suffix.lower() in suffixes) or (directories and path.is_dir()):
            record = _record_of(path)
            if record is not None:
                out.append((path, record))
    return out


def _link_problems(cert: dict, label: str, earlier: dict[str, dict], unreadable: set[str]) -> list[str]:
    """An entry that follows a request must follow an earlier entry whose output model is its input model (not
    checked when that entry failed its own checks: reported already)."""
    previous = cert.get("previous_request")
    if previous is None or (previous not in earlier and (previous in unreadable or None in unreadable)):
        return []
    before = earlier.get(previous)
    if before is None:
        return [f"{label}: follows request {previous!r}, which is no earlier entry of the ledger"]
    output = before.get("output_model") if isinstance(before.get("output_model"), dict) else {}
    given = cert.get("input_model") if isinstance(cert.get("input_model"), dict) else {}
    if output.get("sha256") != given.get("sha256"):
        return [f"{label}: follows request {previous!r}, but that request's output model is not this entry's input "
                "model"]
    return []


def _signature_problems(row: _Row, label: str, public: Any, given_id: str | None) -> list[str]:
    if public is None:
        if row.signature is not None:
            return [f"{label} is signed (key {row.key_id}): give its public key (--key) to verify the signature"]
        return []
    if row.signature is None:
        return [f"{label} is not signed, but a public key was given: every entry should be signed with it"]
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(bytes.fromhex(row.signature), signed_message(row.entry_hash))
    except (InvalidSignature, ValueError, TypeError):
        signer = f" (signed with key {row.key_id}, given key {given_id})" if row.key_id != given_id else ""
        return [f"{label}: its signature does not verify with the given public key{signer}"]
    return []


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text
