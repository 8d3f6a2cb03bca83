"""Where the server's CPU goes, by part of the code, for an issuance beside the constant answer (issue
34, "where the 40 µs go"): `python3 -m bench.profile.run`, run by bench/profile/run.sh.

One release server; wrk issuance (every request a new user, -t1 -c256), then wrk on GET /healthz, each
for SPEED_SECONDS while `perf record` samples the server alone. Every sample is given to a part twice:
by its own (leaf) frame, and by the innermost frame of our parts on its call chain. A part's µs per
answer is its share of the sampled CPU times the server's CPU per answer from /proc (bench/cpu.py);
issuance's µs minus the constant's is what an issuance costs the server beyond answering at all.
Prepends a section to bench/results/profile.md.
"""
import collections
import datetime
import functools
import os
import re
import shutil
import subprocess
import tempfile

from bench.lib import ROOT, audit, checkpoint, first_line, prepend_result, psql, run_tool
from bench.run import create_coupon, server, verdict, wrk_check
from bench.speed.run import CONNECTIONS, SECONDS, measure, per_answer, wrk, wrk_machine

FREQUENCY = os.environ.get("PROFILE_FREQUENCY", "999")
CALL_GRAPH = os.environ.get("PROFILE_CALL_GRAPH", "dwarf,16384")
KEEP = os.environ.get("PROFILE_KEEP") == "1"  # keeps perf's data (in /tmp) for perf report
TOP = 25
HEADER = ("# Profile: where the server's CPU goes, issuance beside the constant answer\n\n"
          "Written by `bench/profile/run.sh`, newest first.\n\n")

# Our parts (our code and the libraries it runs on), counted inclusively: a frame's owner (below) is
# tried against them in this order and the first match wins. The CouponService types are those of
# Sources/CouponService/*/.
OURS = [
    ("HTTP parsing and writing (NIOHTTP1, HummingbirdCore, llhttp)", r"(NIOHTTP1|HummingbirdCore|NIOHTTPTypes\w*|HTTPTypes)\.|c_nio_llhttp"),
    ("routing (Router, RouterTrie, RouterResponder)", r"Hummingbird\.(Router\b|RouterTrie|TrieNode|RouterPath|RouterResponder)"),
    ("Hummingbird: requests, responses, middleware", r"Hummingbird\."),
    ("JSON in and out (JSONDecoder, StrictJSON, RequestParser, RFC3339, TicketResponse...)",
     r"FoundationEssentials\.\w*JSON|CouponService\.(StrictJSON|RFC3339|RequestParser|WholeNumber|\w+Response\b|ByteBuffer\.writeJSON)"),
    ("catalogue (CouponCatalogue, HolderSet, DatabaseClock, CatalogueListener, CatalogueStore)",
     r"CouponService\.(CouponCatalogue|HolderSet|DatabaseClock|SaleWindow|CatalogueListener|CatalogueStore)\b"),
    ("issuance queue and its tasks (IssuanceQueue, TicketIssuer, IssuanceStore, TicketAnswer, withDeadline)",
     r"CouponService\.(IssuanceQueue|TicketIssuer|IssuanceStore|IssuanceDatabase|TicketAnswer|TicketOutcome|withDeadline|DeadlineRace)\b"),
    ("PostgresNIO: wire encoding and decoding, connection pool", r"(PostgresNIO|_ConnectionPoolModule)\."),
    ("TLS to PostgreSQL (NIOSSL, BoringSSL)", r"(NIOSSL|NIOTLS)\.|C(NIO|Crypto)BoringSSL|bssl::|_(aesni|vpaes)_"),
    ("metrics (swift-metrics, Prometheus, CouponMetrics, CouponGauges)",
     r"(CoreMetrics|Metrics|Prometheus)\.|CouponService\.(CouponMetrics|CouponSeries|CouponGauges|MetricsController)\b"),
    ("logging (swift-log, JSONLogHandler, TextLogHandler)", r"Logging\.|CouponService\.(JSONLogHandler|TextLogHandler)\b"),
    ("NIO: event loop, channels, sockets, buffers (NIOCore, NIOPosix)",
     r"(NIOCore|NIOPosix|NIOConcurrencyHelpers|_NIODataStructures|NIOExtras|Atomics)\.|catmc_"),
    ("other service code: handlers, middleware, stores (CouponService)", r"(CouponService|CouponServer)\."),
]
# The parts counted by a sample's own frame only: the walk for ours passes over their frames.
KERNEL = "kernel (self)"
CONCURRENCY = "Swift concurrency: swift_task_*, job executors (self)"
RUNTIME = "Swift runtime: retain/release, metadata, exclusivity, allocation (self)"
MALLOC = "libc malloc/free (self)"
LIBC = "libc and the loader other: memcpy, locks, syscall wrappers, __tls_get_addr, vDSO clock (self)"
STDLIB = "Swift standard library: String, collections (self)"
FOUNDATION = "Foundation other than JSON (self)"
OTHER = "other (self)"
PARTS = [name for name, _ in OURS] + [KERNEL, CONCURRENCY, RUNTIME, MALLOC, LIBC, STDLIB, FOUNDATION, OTHER]
MALLOC_NAMES = re.compile(r"(__libc_)?(malloc|free|cfree|calloc|realloc|memalign|posix_memalign|aligned_alloc)$"
                          r"|_int_|_mid_memalign|tcache|malloc_|unlink_chunk|sysmalloc|arena_")


def profile(running, command, data):
    """`command` (wrk) measured as bench/speed measures it, while perf samples the server into `data`
    for as long as `command` runs."""
    return measure(running, ["perf", "record", "-q", "-N", "-o", data, "-F", FREQUENCY, "--call-graph", CALL_GRAPH,
                             "-p", str(running.process.pid), "--", *command])


def call_chains(data):
    """{call chain: sampled CPU ns}, {thread name: sampled CPU ns} and the number of samples, from
    `perf script`; a chain is (symbol, DSO) pairs from the sample's own frame out."""
    chains, threads = collections.Counter(), collections.Counter()
    samples, thread, period, frames = 0, "", 0, []
    script = subprocess.Popen(["perf", "script", "-i", data, "-F", "comm,period,ip,sym,dso", "--no-inline"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in [*script.stdout, "end 0\n"]:  # a last header ends the last sample
        if line.startswith("\t"):
            symbol, _, dso = line.strip().split(" ", 1)[1].rpartition(" (")
            frames.append((symbol, dso[:-1]))
        elif line.strip():
            if frames:
                chains[tuple(frames)] += period
                threads[thread] += period
                samples += 1
            name, period = line.rsplit(None, 1)
            thread, period, frames = re.sub(r"\d+", "N", name.strip()), int(period), []
    if script.wait() != 0:
        raise RuntimeError(f"perf script -i {data} failed")
    return chains, threads, samples


def demangled(names):
    """{Swift mangled name: its demangled form} (`swift demangle`); empty without swift."""
    mangled = sorted(name for name in names if name.startswith(("$s", "_$s")))
    if not mangled or not shutil.which("swift"):
        return {}
    out = subprocess.run(["swift", "demangle", "--compact"], input="\n".join(mangled) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(zip(mangled, out))


@functools.cache
def bare(name):
    """A demangled name without its generic arguments, signatures and return types; a private type by
    its name ("(Waiter in _0F3A...)" is "Waiter"); an extension's method as its module's
    ("(extension in CouponService):NIOCore.ByteBuffer.writeJSONString" is
    "CouponService.ByteBuffer.writeJSONString")."""
    text = re.sub(r"\((\w+) in _[0-9A-F]+\)", r"\1", name.replace("->", "→"))
    text = re.sub(r"\(extension in (\w+)\):\w+\.", r"\1.", text)
    while (shorter := re.sub(r"<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]", "", text)) != text:
        text = shorter
    return re.sub(r"→ ?(sending |some |any )?[\w.?!]*", "", text).strip() or name


@functools.cache
def owner(name):
    """What a frame's code belongs to: its first module-qualified name ("closure #1 in
    CouponService.IssuanceQueue.enqueue" belongs to CouponService.IssuanceQueue), a witness's
    conforming type, or a C name as it is."""
    text = bare(name).split(" in conformance ", 1)[-1]
    first = re.search(r"[A-Za-z_]\w*\.\w", text)
    return text[first.start():] if first else text


@functools.cache
def our_part(name, dso):
    """The part of ours a frame is in, or None."""
    if dso.startswith("[kernel"):
        return None
    return next((part for part, pattern in OURS if re.match(pattern, owner(name))), None)


def concurrency(name, dso):
    """Whether a frame is Swift concurrency's runtime (dispatch's, on Linux, runs its global executor)."""
    library = os.path.basename(dso)
    return library.startswith(("libswift_Concurrency", "libdispatch")) or re.match(r"swift_(task|job|continuation|asyncLet)", name)


@functools.cache
def own_part(name, dso):
    """The part a sample's own frame is in."""
    library = os.path.basename(dso)
    if dso.startswith("[kernel"):
        return KERNEL
    if part := our_part(name, dso):
        return part
    if concurrency(name, dso):
        return CONCURRENCY
    if re.match(r"(Swift|_StringProcessing|Synchronization)\.", owner(name)):
        return STDLIB
    if re.match(r"_*swift_|swift::", name) or library.startswith("libswiftCore"):
        return RUNTIME
    if library.startswith(("libc.so", "ld-linux", "[vdso]")):
        return MALLOC if MALLOC_NAMES.match(name.split("@")[0]) else LIBC
    if owner(name).startswith("Foundation") or library.startswith("libFoundation"):
        return FOUNDATION
    return OTHER


def inclusive_part(chain):
    """The innermost part of ours on the chain, looking no further out than the Swift concurrency
    runtime (whose executor is the root of every task's chain); without one, the own frame's part."""
    for name, dso in chain:
        if part := our_part(name, dso):
            return part
        if concurrency(name, dso):
            break
    return own_part(*chain[0])


def attribute(data):
    """One row's samples: sampled CPU ns by own part, by inclusive part, by own frame (demangled
    symbol, DSO) and by thread, and the number of samples."""
    chains, threads, samples = call_chains(data)
    names = demangled({name for chain in chains for name, _ in chain})
    own, inclusive, symbols = collections.Counter(), collections.Counter(), collections.Counter()
    for chain, ns in chains.items():
        chain = tuple((names.get(name, name), dso) for name, dso in chain)
        own[own_part(*chain[0])] += ns
        inclusive[inclusive_part(chain)] += ns
        symbols[chain[0]] += ns
    return {"own": own, "inclusive": inclusive, "symbols": symbols, "threads": threads, "samples": samples,
            "ns": sum(chains.values())}


def row(name, unit, result, answers, data):
    """A profiled row: its wrk result, answers (tickets issued, or answers), server µs per answer from
    /proc, and its samples attributed."""
    return dict(result, name=name, unit=unit, answers=answers, server_us=per_answer(result["cpu"], answers)["server"],
                **attribute(data))


def rows_table(rows):
    """Each row's rate, the server's CPU per answer from /proc and as sampled, and the threads it ran on."""
    lines = ["| row | rate | server µs per answer (/proc) | sampled µs per answer | samples | sampled CPU by thread |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        threads = ", ".join(f"{name} {100 * ns / r['ns']:.0f}%" for name, ns in r["threads"].most_common(3))
        lines.append(f"| {r['name']} | {r['answers'] / (r['duration_us'] / 1e6):,.0f} {r['unit']}/s | {r['server_us']:.1f} | "
                     f"{r['ns'] / 1e3 / r['answers']:.1f} | {r['samples']:,} | {threads} |")
    return "\n".join(lines)


def parts_table(rows, view):
    """Per part, for each row its share of the sampled CPU and its µs per answer; then issuance's µs
    minus the constant's."""
    issuance, constant = rows
    lines = ["| part | issuance % | µs per ticket | constant % | µs per answer | difference µs |",
             "|---|---:|---:|---:|---:|---:|"]
    for part in PARTS + ["total"]:
        shares = [1.0 if part == "total" else r[view][part] / r["ns"] for r in rows]
        if not any(shares):
            continue
        us = [share * r["server_us"] for share, r in zip(shares, rows)]
        lines.append(f"| {part} | {100 * shares[0]:.1f} | {us[0]:.1f} | {100 * shares[1]:.1f} | {us[1]:.1f} | {us[0] - us[1]:+.1f} |")
    return "\n".join(lines)


def top_symbols(profiled):
    """The own frames that took the most of a row's samples, without their generic arguments and signatures."""
    lines = ["| % | µs per ticket | own frame | DSO |", "|---:|---:|---|---|"]
    for (name, dso), ns in profiled["symbols"].most_common(TOP):
        shown = bare(name) if len(bare(name)) <= 140 else bare(name)[:139] + "…"
        lines.append(f"| {100 * ns / profiled['ns']:.1f} | {ns / profiled['ns'] * profiled['server_us']:.2f} | `{shown}` | {os.path.basename(dso)} |")
    return "\n".join(lines)


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    folder = tempfile.mkdtemp(prefix="coupon-profile-", dir="/tmp")
    try:
        big = create_coupon(60_000 * SECONDS)
        psql("VACUUM coupon_tickets")
        checkpoint()
        with server(group_size=512) as running:
            before = audit(big).held
            print(f"issuance, {SECONDS} s under perf", flush=True)
            issuance = profile(running, wrk("", "issue.lua", str(big), f"profile-{started:%H%M%S}"), f"{folder}/issuance.data")
            after = audit(big)
            issued = after.held - before
            checked = verdict(after, wrk_check(issuance, issued, CONNECTIONS))
            print(f"constant answer, {SECONDS} s under perf", flush=True)
            constant = profile(running, wrk("/healthz", "constant.lua"), f"{folder}/constant.data")
        sizes = ", ".join(f"{name} {os.path.getsize(f'{folder}/{name}.data') / 2**20:.0f} MB" for name in ("issuance", "constant"))
        print(f"attributing the samples (perf script; data: {sizes})", flush=True)
        rows = [row("issuance, every request a new user", "issued", issuance, issued, f"{folder}/issuance.data"),
                row("constant answer, GET /healthz", "answers", constant, constant["requests"], f"{folder}/constant.data")]
    finally:
        if KEEP:
            print(f"perf data kept in {folder}")
        else:
            shutil.rmtree(folder)

    changed = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "migrations"]).returncode
    report = f"""## {started:%Y-%m-%d %H:%M} UTC

Binary {os.environ['COUPON_BIN']}; working tree at {first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}{' with uncommitted changes' if changed else ''}.
Machine: {wrk_machine()}.
One server (--group-size 512): wrk issuance (every request a new user), then GET /healthz, {SECONDS} s each, while
`perf record -F {FREQUENCY} --call-graph {CALL_GRAPH} -p SERVER` sampled the server alone. Issuance audit: {checked}.
Swift names {'demangled by `swift demangle`' if shutil.which('swift') else 'left mangled (no swift on PATH)'}.

{rows_table(rows)}

Threads: NIO-SGLTN-N-#N are NIO's event loops; oot.default-qos is com.apple.root.default-qos cut to 15
characters, dispatch's threads, which run Swift concurrency's global executor.
µs = a part's share of the sampled CPU times the server's CPU per answer from /proc (per issued ticket for
issuance); the difference is issuance's µs minus the constant's. The /proc CPU includes perf's own cost of
taking samples in the server, which the samples do not show: compare the totals with bench/results/speed.md.

### Inclusive: a sample counts toward the innermost part of ours on its call chain

The walk out from the sample's own frame stops at the Swift concurrency runtime (its executor is the root
of every task's chain); a sample with no part of ours on the way counts toward its own frame's part,
the rows marked (self): kernel time under a socket call of NIO's counts toward NIO here.

{parts_table(rows, "inclusive")}

### Self: every sample by its own (leaf) frame

{parts_table(rows, "own")}

### The {TOP} own frames of issuance that took the most

{top_symbols(rows[0])}
"""
    prepend_result("profile.md", HEADER, report)
    print(report)
    return 0


if __name__ == "__main__":
    run_tool(main, "profile.md")
