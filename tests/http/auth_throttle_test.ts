/** The failed-authentication buckets on an injected clock. */
import assert from "node:assert/strict";
import {
  addressKey,
  AUTH_THROTTLE_MAX_ADDRESSES,
  type AuthAttempt,
  AuthThrottle,
  clientAddress,
  IPV4_LOOPBACK_KEY,
} from "../../src/http/auth_throttle.ts";

const RIGHT = "right";

/** A throttle on a clock the test moves, and a check that counts its calls. */
function setup(
  limits: { burst: number; perMin: number; totalPerMin: number },
  maxAddresses?: number,
) {
  let now = 1_000_000;
  const throttle = new AuthThrottle({
    authFailuresBurst: limits.burst,
    authFailuresPerMin: limits.perMin,
    authFailuresAllPerMin: limits.totalPerMin,
  }, { now: () => now, ...(maxAddresses ? { maxAddresses } : {}) });
  let checks = 0;
  const attempt = (address: string, token: string): AuthAttempt<string> =>
    throttle.attempt(address, () => (checks++, token === RIGHT ? "alice" : undefined));
  return {
    throttle,
    attempt,
    advance: (ms: number) => void (now += ms),
    get checks() {
      return checks;
    },
  };
}

const FAILED = { outcome: "failed" } as const;
const PASSED = { outcome: "passed", value: "alice" } as const;

Deno.test("an address gets its burst of failures, then is refused unchecked until its next token", () => {
  const t = setup({ burst: 3, perMin: 6, totalPerMin: 1000 });
  for (let i = 0; i < 3; i++) assert.deepEqual(t.attempt("10.0.0.1", "wrong"), FAILED);
  assert.equal(t.checks, 3);
  // One token every 10 s: the right token is refused like a wrong one, and not even checked.
  assert.deepEqual(t.attempt("10.0.0.1", RIGHT), {
    outcome: "refused",
    retryAfterS: 10,
    bucket: "address",
  });
  assert.equal(t.checks, 3);
  t.advance(9_001);
  assert.deepEqual(t.attempt("10.0.0.1", "wrong"), {
    outcome: "refused",
    retryAfterS: 1,
    bucket: "address",
  });
  t.advance(999);
  assert.deepEqual(t.attempt("10.0.0.1", RIGHT), PASSED);
  assert.equal(t.checks, 4);
  // The refill gave one token: one more failure, then refused for 10 s again.
  assert.deepEqual(t.attempt("10.0.0.1", "wrong"), FAILED);
  assert.equal((t.attempt("10.0.0.1", RIGHT) as { retryAfterS: number }).retryAfterS, 10);
  // Other addresses are not affected.
  assert.deepEqual(t.attempt("10.0.0.2", RIGHT), PASSED);
});

Deno.test("a successful check spends nothing, and an address is forgotten once its bucket is full", () => {
  const t = setup({ burst: 2, perMin: 60, totalPerMin: 1000 });
  for (let i = 0; i < 100; i++) assert.deepEqual(t.attempt("10.0.0.1", RIGHT), PASSED);
  assert.equal(t.throttle.addressCount, 0, "successes leave nothing behind");
  assert.deepEqual(t.attempt("10.0.0.1", "wrong"), FAILED);
  assert.deepEqual(t.attempt("10.0.0.1", "wrong"), FAILED);
  assert.equal(t.attempt("10.0.0.1", RIGHT).outcome, "refused");
  assert.equal(t.throttle.addressCount, 1);
  t.advance(1_999);
  assert.deepEqual(t.attempt("10.0.0.1", RIGHT), PASSED);
  assert.equal(t.throttle.addressCount, 1, "1.999 tokens of 2: still remembered");
  t.advance(1);
  assert.deepEqual(t.attempt("10.0.0.1", RIGHT), PASSED);
  assert.equal(t.throttle.addressCount, 0, "full again: forgotten");
});

Deno.test("Retry-After is whole seconds, rounded up, at least 1", () => {
  const t = setup({ burst: 1, perMin: 7, totalPerMin: 1000 });
  assert.deepEqual(t.attempt("a", "wrong"), FAILED);
  // 60 / 7 = 8.57 s until the next token.
  assert.equal((t.attempt("a", RIGHT) as { retryAfterS: number }).retryAfterS, 9);
  t.advance(8_500);
  assert.equal((t.attempt("a", RIGHT) as { retryAfterS: number }).retryAfterS, 1);
  const fast = setup({ burst: 1, perMin: 100_000, totalPerMin: 1000 });
  assert.deepEqual(fast.attempt("a", "wrong"), FAILED);
  assert.equal((fast.attempt("a", RIGHT) as { retryAfterS: number }).retryAfterS, 1);
});

Deno.test("addresses cycled beyond the cap keep the table at the cap, forgetting the least recently failing", () => {
  const t = setup({ burst: 2, perMin: 1, totalPerMin: 1_000_000 }, 3);
  for (const a of ["a", "b", "c"]) t.attempt(a, "wrong");
  t.attempt("a", "wrong"); // a is now the most recent, and dry
  t.attempt("d", "wrong"); // b gives way
  assert.equal(t.throttle.addressCount, 3);
  assert.equal(t.attempt("a", RIGHT).outcome, "refused", "a is still remembered");
  assert.deepEqual(t.attempt("b", "wrong"), FAILED);
  assert.deepEqual(t.attempt("b", "wrong"), FAILED, "b was forgotten: its burst is whole again");
  for (let i = 0; i < 10_000; i++) t.attempt(`10.1.${i >> 8}.${i & 255}`, "wrong");
  assert.equal(t.throttle.addressCount, 3);
  assert.equal(AUTH_THROTTLE_MAX_ADDRESSES, 10_000);
});

Deno.test("with the total bucket empty, addresses that failed recently are refused unchecked and a clean one is still checked", () => {
  // Per address: 5 at once, then one every 10 s; all together: 3 a minute (one every 20 s).
  const t = setup({ burst: 5, perMin: 6, totalPerMin: 3 });
  for (const a of ["a", "b", "c"]) assert.deepEqual(t.attempt(a, "wrong"), FAILED);
  const checks = t.checks;
  // a has 4 of 5 tokens, but the total is dry: refused until a's bucket is full (10 s) or the
  // total has a token again (20 s), whichever comes first; a right token is not let through.
  assert.deepEqual(t.attempt("a", RIGHT), { outcome: "refused", retryAfterS: 10, bucket: "all" });
  assert.deepEqual(t.attempt("b", "wrong"), {
    outcome: "refused",
    retryAfterS: 10,
    bucket: "all",
  });
  assert.equal(t.checks, checks, "nothing was checked");
  // A clean address is checked: the right token gets in at once...
  assert.deepEqual(t.attempt("d", RIGHT), PASSED);
  // ...and a clean address's failure while the total is dry spends its whole burst (one strike).
  assert.deepEqual(t.attempt("e", "wrong"), FAILED);
  assert.deepEqual(t.attempt("e", RIGHT), {
    outcome: "refused",
    retryAfterS: 10,
    bucket: "address",
  });
  assert.equal(t.checks, checks + 2);
  // After 10 s, a is full again (forgotten, so clean) and checked.
  t.advance(10_000);
  assert.deepEqual(t.attempt("a", RIGHT), PASSED);
  // e has one token of 5 and the total still has less than one: refused for the total.
  assert.equal(t.attempt("e", RIGHT).outcome, "refused");
  // Once the total has a token, e (not full) is checked again.
  t.advance(10_000);
  assert.deepEqual(t.attempt("e", RIGHT), PASSED);
});

Deno.test("every IPv4 loopback address is one address: a local guesser cannot take a clean one each", () => {
  const t = setup({ burst: 2, perMin: 1, totalPerMin: 1000 });
  assert.deepEqual(t.attempt(addressKey("127.0.0.1"), "wrong"), FAILED);
  assert.deepEqual(t.attempt(addressKey("127.0.1.1"), "wrong"), FAILED);
  // Any other address of 127.0.0.0/8, directly or IPv4-mapped, is the same spent address.
  assert.equal(t.attempt(addressKey("127.9.9.9"), "wrong").outcome, "refused");
  assert.equal(t.attempt(addressKey("::ffff:127.200.0.1"), RIGHT).outcome, "refused");
  assert.equal(t.checks, 2);
  assert.equal(addressKey("127.0.0.1"), IPV4_LOOPBACK_KEY);
  assert.equal(addressKey("128.0.0.1"), "128.0.0.1");
});

Deno.test("failures count per IPv4 address, per IPv6 /64, and IPv4-mapped IPv6 as IPv4", () => {
  assert.equal(addressKey("203.0.113.7"), "203.0.113.7");
  assert.equal(addressKey("::ffff:203.0.113.7"), "203.0.113.7");
  assert.equal(addressKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.notEqual(addressKey("2001:db8:1:3::1"), addressKey("2001:db8:1:2::1"));
  assert.equal(addressKey("fe80::1%eth0"), "fe80:0:0:0::/64");
  assert.equal(addressKey("::1"), "0:0:0:0::/64");
  assert.equal(addressKey("not:an::address::"), "not:an::address::");
  const tcp = (hostname: string): Deno.ServeHandlerInfo => ({
    remoteAddr: { transport: "tcp", hostname, port: 1234 },
    completed: Promise.resolve(),
  });
  assert.equal(clientAddress(tcp("::ffff:203.0.113.7")), "203.0.113.7");
  assert.equal(clientAddress(undefined), "unknown");
});
