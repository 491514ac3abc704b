/** Dashboard logins are fair shares: a principal's own oldest gives way, never another's. */
import assert from "node:assert/strict";
import { SESSION_COOKIE, UiSessions } from "../../src/ui/ui_sessions.ts";

const requestWith = (id: string) =>
  new Request("http://127.0.0.1/ui", { headers: { cookie: `${SESSION_COOKIE}=${id}` } });

Deno.test("at its own cap a principal's oldest login gives way, and nobody else's", () => {
  const sessions = new UiSessions({ maxPerPrincipal: 3, maxTotal: 100 });
  const alice = sessions.create("alice");
  const bob = [1, 2, 3].map(() => sessions.create("bob"));
  assert.deepEqual([sessions.countOf("bob"), sessions.size], [3, 4], "3 is within Bob's share");
  for (const id of bob) assert.equal(sessions.principalOf(requestWith(id)), "bob");
  for (let i = 0; i < 64; i++) sessions.create("bob");
  assert.equal(sessions.countOf("bob"), 3);
  assert.equal(sessions.principalOf(requestWith(alice)), "alice", "Alice is still logged in");
  for (const id of bob) assert.equal(sessions.principalOf(requestWith(id)), undefined);
});

Deno.test("at the total cap the principal holding the most gives way; on a tie, the one asking", () => {
  const sessions = new UiSessions({ maxPerPrincipal: 10, maxTotal: 4 });
  const alice = sessions.create("alice");
  const bob = [1, 2, 3].map(() => sessions.create("bob"));
  assert.equal(sessions.size, 4);
  // One more of Bob's: he holds the most, so his oldest gives way.
  sessions.create("bob");
  assert.equal(sessions.principalOf(requestWith(bob[0]!)), undefined);
  assert.equal(sessions.principalOf(requestWith(alice)), "alice");
  // Carol's first login takes Bob's oldest too (he holds 3, she 1).
  const carol = sessions.create("carol");
  assert.equal(sessions.principalOf(requestWith(bob[1]!)), undefined);
  assert.deepEqual(
    ["alice", "bob", "carol"].map((p) => sessions.countOf(p)),
    [1, 2, 1],
  );
  // Alice's second: she and Bob then hold 2 each; the one asking (Alice) gives way.
  const alice2 = sessions.create("alice");
  assert.equal(sessions.principalOf(requestWith(alice)), undefined, "Alice's own oldest went");
  assert.equal(sessions.principalOf(requestWith(alice2)), "alice");
  assert.equal(sessions.principalOf(requestWith(carol)), "carol");
  assert.equal(sessions.principalOf(requestWith(bob[2]!)), "bob");
  assert.equal(sessions.size, 4);
});

Deno.test("an expired login is forgotten and makes room", () => {
  let now = 1_000_000;
  const sessions = new UiSessions({ maxPerPrincipal: 2, maxTotal: 2, ttlS: 10, now: () => now });
  const alice = sessions.create("alice");
  const bob = sessions.create("bob");
  now += 10_000;
  assert.equal(sessions.principalOf(requestWith(alice)), undefined);
  const carol = sessions.create("carol");
  assert.equal(sessions.size, 1, "Bob's expired login was dropped, not counted");
  assert.equal(sessions.principalOf(requestWith(bob)), undefined);
  assert.equal(sessions.principalOf(requestWith(carol)), "carol");
});
