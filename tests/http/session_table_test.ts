/** The 2025 session table on a clock the test moves: idle sweeps, LRU eviction and fair shares. */
import assert from "node:assert/strict";
import {
  EVICTABLE_IDLE_MS,
  REMEMBERED_CLOSES,
  type SessionClock,
  type SessionKind,
  type SessionLimits,
  SessionTable,
  SWEEP_MS,
  UNUSED_SESSION_IDLE_MS,
} from "../../src/http/session_table.ts";

/** A clock that moves only when told, and the repeating timers asked of it. */
class TestClock implements SessionClock {
  ms = 1_000_000;
  readonly timers: { ms: number; run: () => void; stopped: boolean }[] = [];

  now(): number {
    return this.ms;
  }

  every(ms: number, run: () => void): { stop(): void } {
    const timer = { ms, run, stopped: false };
    this.timers.push(timer);
    return { stop: () => void (timer.stopped = true) };
  }

  advance(ms: number): void {
    this.ms += ms;
  }
}

interface Link {
  readonly kind: SessionKind;
}

/**
 * A table on a test clock with the configuration's defaults (`KLYM_MAX_SESSIONS_PER_PRINCIPAL` as
 * `KLYM_MAX_SESSIONS`); `open` opens a session named by its id; `closed` lists the ids closed.
 */
function tableOf(limits: Partial<SessionLimits> = {}) {
  const maxSessions = limits.maxSessions ?? 256;
  const clock = new TestClock();
  const closed: string[] = [];
  const names = new Map<Link, string>();
  const table = new SessionTable<Link>({
    sessionIdleS: 1800,
    maxSessions,
    maxSessionsPerPrincipal: maxSessions,
    ...limits,
  }, {
    clock,
    close: (link) => {
      closed.push(names.get(link)!);
      return Promise.resolve();
    },
  });
  const open = (id: string, owner: string, kind: SessionKind = "streamable") => {
    const link = { kind };
    names.set(link, id);
    return table.open(id, owner, link);
  };
  /** The ids still open, among `ids`. */
  const left = (owner: string, kind: SessionKind, ...ids: string[]) =>
    ids.filter((id) => table.find(id, owner, kind) !== undefined);
  return { clock, table, closed, open, left };
}

Deno.test("at KLYM_MAX_SESSIONS, the least recently used Streamable HTTP session idle EVICTABLE_IDLE_MS gives way", async () => {
  const { clock, table, closed, open, left } = tableOf({ maxSessions: 2 });
  const first = open("first", "local");
  const second = open("second", "local");
  clock.advance(EVICTABLE_IDLE_MS - 1);
  assert.deepEqual(table.makeRoom("local"), {
    ok: false,
    why: 'principal "local" has 2 open sessions, the limit is 2 (KLYM_MAX_SESSIONS)',
  }, "idle a millisecond short: nobody gives way");
  table.request(second).done(); // second is used: first is now the least recently used
  clock.advance(EVICTABLE_IDLE_MS);
  assert.equal(first.lastSeen < second.lastSeen, true);
  assert.deepEqual(table.makeRoom("local"), { ok: true });
  assert.deepEqual(closed, ["first"]);
  assert.deepEqual(left("local", "streamable", "first", "second"), ["second"]);
  assert.equal(table.size, 1);
  await table.close();
});

Deno.test("a session with a request in flight is never evicted, by the limit or the sweep", async () => {
  const { clock, table, closed, open, left } = tableOf({ maxSessions: 1, sessionIdleS: 60 });
  const busy = open("busy", "local");
  const request = table.request(busy);
  clock.advance(3600_000);
  assert.equal(table.makeRoom("local").ok, false, "the only session is answering a request");
  table.sweep();
  assert.deepEqual(closed, []);
  request.done();
  request.done(); // a second call changes nothing
  assert.equal(busy.inFlight, 0);
  assert.equal(busy.lastSeen, clock.now(), "its answer sent is its last use");
  clock.advance(60_000);
  table.sweep();
  assert.deepEqual(left("local", "streamable", "busy"), ["busy"], "idle exactly 60 s: kept");
  clock.advance(1);
  table.sweep();
  assert.deepEqual(closed, ["busy"]);
  await table.close();
});

Deno.test("a session unused after its handshake goes after UNUSED_SESSION_IDLE_MS; a used one stays until KLYM_SESSION_IDLE_S", async () => {
  const { clock, table, closed, open } = tableOf({ sessionIdleS: 1800 });
  const unused = open("unused", "local");
  table.received(unused); // `notifications/initialized`: still unused
  const used = open("used", "local");
  table.received(used);
  table.request(used).done();
  clock.advance(UNUSED_SESSION_IDLE_MS);
  table.sweep();
  assert.deepEqual(closed, [], "idle exactly UNUSED_SESSION_IDLE_MS: kept");
  clock.advance(1);
  table.sweep();
  assert.deepEqual(closed, ["unused"]);
  clock.advance(1800_000 - UNUSED_SESSION_IDLE_MS - 1);
  table.sweep();
  assert.deepEqual(closed, ["unused"], "idle exactly KLYM_SESSION_IDLE_S: kept");
  clock.advance(1);
  table.sweep();
  assert.deepEqual(closed, ["unused", "used"]);
  assert.equal(table.size, 0);
  await table.close();
});

Deno.test("a Streamable HTTP session listening on a GET stream is a live client: never closed as idle or unused until its stream ends", async () => {
  const { clock, table, closed, open } = tableOf({ sessionIdleS: 120, maxSessions: 1 });
  const listener = open("listener", "local");
  table.received(listener); // `notifications/initialized`, then only its GET stream
  const stream = table.listening(listener);
  assert.equal(listener.messages, 1, "a stream is not a message: the session is still unused");
  clock.advance(3600_000);
  table.sweep();
  assert.deepEqual(closed, [], "an hour past both idle bounds, its stream open: kept");
  assert.equal(table.makeRoom("local").ok, false, "a listening session is not idle at the limit");
  stream.done();
  stream.done(); // a second call changes nothing
  assert.equal(listener.inFlight, 0);
  clock.advance(UNUSED_SESSION_IDLE_MS);
  table.sweep();
  assert.deepEqual(closed, [], "unused for exactly UNUSED_SESSION_IDLE_MS after its stream: kept");
  clock.advance(1);
  table.sweep();
  assert.deepEqual(closed, ["listener"]);
  await table.close();
});

Deno.test("the table tells the owner of a session it closed why, for its latest REMEMBERED_CLOSES sessions", async () => {
  const { clock, table, open } = tableOf({ sessionIdleS: 120, maxSessions: 2 });
  open("unused", "alice");
  table.received(open("idle", "alice"));
  table.request(table.find("idle", "alice", "streamable")!).done();
  clock.advance(UNUSED_SESSION_IDLE_MS + 1);
  table.sweep();
  assert.equal(
    table.whyClosed("unused", "alice"),
    "closed after 60 s with nothing sent after its handshake and no stream open",
  );
  assert.equal(table.whyClosed("unused", "bob"), undefined, "another principal is told nothing");
  assert.equal(table.whyClosed("idle", "alice"), undefined, "still open");
  clock.advance(120_000);
  table.sweep();
  assert.equal(table.whyClosed("idle", "alice"), "closed after 120 s idle (KLYM_SESSION_IDLE_S)");
  open("a", "alice");
  open("b", "alice");
  clock.advance(EVICTABLE_IDLE_MS);
  assert.deepEqual(table.makeRoom("alice"), { ok: true });
  assert.equal(
    table.whyClosed("a", "alice"),
    "closed to make room for a new session: the session limit (KLYM_MAX_SESSIONS)",
  );
  await table.drop("b", "closed by its client (DELETE)");
  assert.equal(table.whyClosed("b", "alice"), "closed by its client (DELETE)");
  for (let i = 0; i < REMEMBERED_CLOSES; i++) await table.drop((open(`s${i}`, "alice"), `s${i}`));
  assert.equal(table.whyClosed("b", "alice"), undefined, "forgotten after REMEMBERED_CLOSES more");
  assert.equal(table.whyClosed(`s${REMEMBERED_CLOSES - 1}`, "alice"), "closed");
  await table.close();
});

Deno.test("with KLYM_SESSION_IDLE_S under a minute, an unused session goes at KLYM_SESSION_IDLE_S", async () => {
  const { clock, table, closed, open } = tableOf({ sessionIdleS: 2 });
  open("unused", "local");
  clock.advance(2000);
  table.sweep();
  assert.deepEqual(closed, []);
  clock.advance(1);
  table.sweep();
  assert.deepEqual(closed, ["unused"]);
  await table.close();
});

Deno.test("an open SSE stream is never closed as idle, and a GET keeps a Streamable HTTP session in use", async () => {
  const { clock, table, closed, open, left } = tableOf({ sessionIdleS: 60, maxSessions: 3 });
  open("stream", "local", "sse");
  const watched = open("watched", "local");
  const posted = open("posted", "local", "sse");
  for (let i = 0; i < 10; i++) {
    clock.advance(30_000);
    table.seen(watched);
    table.received(posted);
    table.sweep();
  }
  assert.deepEqual(closed, []);
  assert.equal(table.makeRoom("local").ok, false, "SSE streams and a session in use stay");
  clock.advance(60_001);
  table.sweep();
  assert.deepEqual(closed, ["watched"]);
  assert.deepEqual(left("local", "sse", "stream", "posted"), ["stream", "posted"]);
  await table.close();
});

Deno.test("the sweep runs every min(10 s, KLYM_SESSION_IDLE_S / 2) until the table closes, closing every session", async () => {
  for (const [idleS, every] of [[1800, SWEEP_MS], [2, 1000], [1, 500]] as const) {
    const { clock, table, closed, open } = tableOf({ sessionIdleS: idleS });
    assert.deepEqual(clock.timers.map((t) => t.ms), [every], `KLYM_SESSION_IDLE_S=${idleS}`);
    open("a", "local");
    clock.advance(idleS * 1000 + 1);
    clock.timers[0]!.run();
    assert.deepEqual(closed, ["a"], "the timer's run is a sweep");
    open("b", "local", "sse");
    open("c", "local");
    await table.close();
    assert.equal(clock.timers[0]!.stopped, true);
    assert.deepEqual(closed.sort(), ["a", "b", "c"]);
    assert.equal(table.size, 0);
  }
});

Deno.test("a session is found only by its owner and for its kind", async () => {
  const { table, open } = tableOf();
  open("s1", "alice");
  open("s2", "alice", "sse");
  assert.equal(table.find("s1", "alice", "streamable")?.id, "s1");
  assert.equal(table.find("s1", "bob", "streamable"), undefined);
  assert.equal(table.find("s1", "alice", "sse"), undefined);
  assert.equal(table.find("s2", "alice", "sse")?.link.kind, "sse");
  assert.equal(table.find("nope", "alice", "streamable"), undefined);
  await table.close();
});

Deno.test("at KLYM_MAX_SESSIONS_PER_PRINCIPAL a principal displaces only its own idle session; others keep room", async () => {
  const { clock, table, closed, open } = tableOf({ maxSessions: 10, maxSessionsPerPrincipal: 2 });
  open("a1", "alice", "sse");
  const a2 = open("a2", "alice");
  open("b1", "bob");
  clock.advance(EVICTABLE_IDLE_MS);
  const request = table.request(a2);
  assert.deepEqual(table.makeRoom("alice"), {
    ok: false,
    why:
      'principal "alice" has 2 open sessions, the limit per principal is 2 (KLYM_MAX_SESSIONS_PER_PRINCIPAL)',
  }, "an SSE stream and a session answering a request do not give way; bob's idle one is not hers");
  assert.deepEqual(table.makeRoom("bob"), { ok: true }, "bob has room of his own");
  request.done();
  clock.advance(EVICTABLE_IDLE_MS);
  assert.deepEqual(table.makeRoom("alice"), { ok: true });
  assert.deepEqual(closed, ["a2"]);
  assert.equal(table.countOf("alice"), 1);
  assert.equal(table.countOf("bob"), 1);
  await table.close();
});

Deno.test("a principal below its fair share takes the busiest principal's LRU session, an SSE stream included", async () => {
  const { clock, table, closed, open, left } = tableOf({ maxSessions: 4 });
  const answering = table.request(open("a1", "alice"));
  for (const id of ["a2", "a3", "a4"]) open(id, "alice", "sse");
  assert.deepEqual(table.makeRoom("alice"), {
    ok: false,
    why: 'principal "alice" has 4 open sessions, the limit is 4 (KLYM_MAX_SESSIONS)',
  });
  clock.advance(1);
  assert.deepEqual(table.makeRoom("bob"), { ok: true }, "bob holds 0 of a fair share of 2");
  assert.deepEqual(closed, ["a2"], "the least recently used with no request in flight goes first");
  open("b1", "bob");
  assert.deepEqual(table.makeRoom("bob"), { ok: true }, "1 of 2: alice's next gives way");
  open("b2", "bob");
  assert.deepEqual(closed, ["a2", "a3"]);
  assert.deepEqual(table.makeRoom("bob"), {
    ok: false,
    why:
      '4 sessions are open, the limit is 4 (KLYM_MAX_SESSIONS), and principal "bob" has 2, its fair share being 2',
  }, "at his fair share bob waits like anyone");
  assert.deepEqual(left("alice", "sse", "a2", "a3", "a4"), ["a4"]);
  assert.deepEqual(left("alice", "streamable", "a1"), ["a1"]);
  answering.done();
  await table.close();
});

Deno.test("the busiest principal's session answering a request gives way when it has no other", async () => {
  const { table, closed, open } = tableOf({ maxSessions: 2 });
  const a1 = open("a1", "alice");
  const a2 = open("a2", "alice");
  const requests = [table.request(a1), table.request(a2)];
  assert.deepEqual(table.makeRoom("bob"), { ok: true });
  assert.deepEqual(closed, ["a1"]);
  for (const request of requests) request.done();
  await table.close();
});

Deno.test("at or above its fair share a principal displaces only an idle session of one holding at least as many", async () => {
  const { clock, table, closed, open } = tableOf({ maxSessions: 4 });
  open("a1", "alice");
  open("a2", "alice");
  open("b1", "bob");
  open("c1", "carol");
  clock.advance(EVICTABLE_IDLE_MS);
  // Fair share: 4 / 3 holders = 1. Carol holds 1: she may only displace an idle session of a
  // principal holding at least 1 (the least recently used is alice's first).
  assert.deepEqual(table.makeRoom("carol"), { ok: true });
  assert.deepEqual(closed, ["a1"]);
  open("c2", "carol");
  // Now alice 1, bob 1, carol 2: bob may take only from a principal holding at least his 1.
  clock.advance(EVICTABLE_IDLE_MS);
  assert.deepEqual(table.makeRoom("bob"), { ok: true });
  assert.deepEqual(closed, ["a1", "a2"]);
  open("b2", "bob");
  // Bob 2, carol 2: alice, now holding none, is below her fair share (4 / 3 = 1) and takes one.
  assert.deepEqual(table.makeRoom("alice"), { ok: true });
  assert.deepEqual(closed, ["a1", "a2", "b1"], "bob's least recently used");
  assert.equal(table.size, 3);
  await table.close();
});

Deno.test("above its fair share a principal may not take an idle session of one holding fewer", async () => {
  const { clock, table, closed, open } = tableOf({ maxSessions: 3 });
  const mine = [open("a1", "alice"), open("a2", "alice")];
  open("b1", "bob");
  clock.advance(EVICTABLE_IDLE_MS);
  for (const session of mine) table.request(session).done();
  assert.deepEqual(table.makeRoom("alice"), {
    ok: false,
    why:
      '3 sessions are open, the limit is 3 (KLYM_MAX_SESSIONS), and principal "alice" has 2, its fair share being 1',
  }, "bob's idle session is not hers to take, and hers are in use");
  assert.deepEqual(closed, []);
  clock.advance(EVICTABLE_IDLE_MS);
  assert.deepEqual(table.makeRoom("alice"), { ok: true }, "her own idle session gives way");
  assert.deepEqual(closed, ["a1"]);
  await table.close();
});
