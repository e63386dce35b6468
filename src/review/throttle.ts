/**
 * Failed sign-in throttling for the review console, without express.
 *
 * Why three limits, and why not one per address: analysts sit behind one office NAT, so a limit on
 * the client address alone let anyone in the office (or one mistyping colleague) lock the whole team
 * out. The limits are instead:
 *
 * - per (account, client): the one that stops a guesser at one address. A few free failures, then a
 *   delay that doubles with each further failure up to a cap. It always applies, so a known client
 *   (below) gives an attacker nothing.
 * - per account, across clients: the one that slows a guesser spread over many addresses. More free
 *   failures (several analysts' typos), then the same doubling, but to a lower cap: this limit is the
 *   one an attacker can trigger for somebody else, so what it costs the analyst is bounded.
 * - per client, across accounts: a fixed window with a count far above any office's typos, so one
 *   address cannot try a few passwords on every account.
 *
 * A client from which an account signed in successfully recently is "known" for that account: the
 * account-wide and client-wide limits do not hold it back, only its own (account, client) limit does.
 * An attacker spraying one analyst from a botnet therefore slows every stranger's attempts on that
 * account, but cannot lock the analyst out of the office or home address they use every day, however
 * long the attack goes on; and a spraying bot in the office cannot lock out colleagues who signed in
 * from there before. Nothing here depends on whether the account exists: an unknown username is
 * counted, delayed and locked exactly like a real one, and never becomes known, so the answers do not
 * tell an attacker which names are accounts.
 *
 * State lives in memory (one replica; a restart starts every count over). The table is capped: expired
 * counters go first, then the least recently failed unlocked ones, then locked ones. Known clients are
 * kept apart, so a flood of made-up usernames cannot push them out.
 */
import type { Logger } from 'pino';

export interface BackoffLimit {
  /** Failures allowed before the first delay. */
  freeFailures: number;
  /** The first delay; each further failure doubles it… */
  baseDelaySeconds: number;
  /** …up to this. */
  maxDelaySeconds: number;
}

export interface ThrottleConfig {
  perAccountClient: BackoffLimit;
  perAccount: BackoffLimit;
  perClient: { maxFailures: number; windowSeconds: number };
  /** A backoff counter with no failure for this long (and no lock) starts over. */
  forgetAfterSeconds: number;
  /** How long a successful sign-in makes its client known for that account. */
  knownClientSeconds: number;
  /** Counters kept at most (and, separately, known clients). */
  maxEntries: number;
}

type Scope = 'account-client' | 'account' | 'client';

interface Counter {
  scope: Scope;
  failures: number;
  /** Backoff: the latest failure. Window: the window's start. */
  since: number;
  lockedUntil: number;
}

/** One attempt in flight: counted before the slow password check, settled after it. */
export interface Attempt {
  readonly username: string;
  readonly client: string;
  readonly changes: Array<{ key: string; previousLock: number; lock: number }>;
}

export interface LockoutEvent { scope: Scope; username: string; client: string; until: Date; failures: number }

const keyOf = (scope: Scope, username: string, client: string): string =>
  scope === 'account-client' ? `p\u0000${username}\u0000${client}` : scope === 'account' ? `a\u0000${username}` : `c\u0000${client}`;

export class LoginThrottle {
  private readonly counters = new Map<string, Counter>();
  private readonly known = new Map<string, number>();

  constructor(
    private readonly config: ThrottleConfig,
    private readonly now: () => number,
    private readonly onLockout: (event: LockoutEvent) => void = () => undefined,
  ) {}

  /** Counters and known clients held, for tests and metrics. */
  get size(): { counters: number; known: number } {
    return { counters: this.counters.size, known: this.known.size };
  }

  /** Seconds until `username` may be tried from `client` again; 0 when nothing holds it back. */
  retryAfter(username: string, client: string): number {
    const now = this.now();
    let until = 0;
    for (const scope of this.scopesFor(username, client, now)) {
      const counter = this.live(keyOf(scope, username, client), now);
      if (counter && counter.lockedUntil > now) until = Math.max(until, counter.lockedUntil);
    }
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  /**
   * Counts the attempt as a failure before the password is checked, so a burst of parallel guesses
   * cannot all pass the check together. Every scope counts, known client or not: a typo is a failure.
   */
  begin(username: string, client: string): Attempt {
    const now = this.now();
    const changes: Attempt['changes'] = [];
    for (const scope of ['account-client', 'account', 'client'] as const) {
      const key = keyOf(scope, username, client);
      const counter = this.live(key, now) ?? { scope, failures: 0, since: now, lockedUntil: 0 };
      const previousLock = counter.lockedUntil;
      counter.failures += 1;
      if (scope === 'client') {
        if (counter.failures >= this.config.perClient.maxFailures) counter.lockedUntil = counter.since + this.config.perClient.windowSeconds * 1000;
      } else {
        const limit = scope === 'account' ? this.config.perAccount : this.config.perAccountClient;
        counter.since = now;
        const over = counter.failures - limit.freeFailures;
        // 2 ** over overflows to Infinity long after the cap is reached, and min() takes care of that.
        if (over >= 0) counter.lockedUntil = now + Math.min(limit.maxDelaySeconds, limit.baseDelaySeconds * 2 ** over) * 1000;
      }
      this.counters.delete(key); // re-inserted, so the Map's order is least recently failed first
      this.counters.set(key, counter);
      changes.push({ key, previousLock, lock: counter.lockedUntil });
    }
    this.evict(now);
    return { username, client, changes };
  }

  /** The password was wrong: the attempt stays counted, and any lock it started is reported. */
  failed(attempt: Attempt): void {
    for (const { key, previousLock, lock } of attempt.changes) {
      const counter = this.counters.get(key);
      if (!counter || lock <= previousLock || counter.lockedUntil !== lock) continue;
      this.onLockout({ scope: counter.scope, username: attempt.username, client: attempt.client, until: new Date(lock), failures: counter.failures });
    }
  }

  /**
   * The password was right. This client proved itself for this account: its (account, client) count
   * starts over and it becomes known. The account's and the client's counts only lose this attempt;
   * their earlier failures may have been someone else's guesses.
   */
  succeeded(attempt: Attempt): void {
    const now = this.now();
    for (const { key, previousLock, lock } of attempt.changes) {
      const counter = this.counters.get(key);
      if (!counter) continue;
      if (counter.scope === 'account-client') {
        this.counters.delete(key);
        continue;
      }
      counter.failures = Math.max(0, counter.failures - 1);
      if (counter.lockedUntil === lock) counter.lockedUntil = previousLock;
    }
    const knownKey = keyOf('account-client', attempt.username, attempt.client);
    this.known.delete(knownKey);
    this.known.set(knownKey, now + this.config.knownClientSeconds * 1000);
    this.evictKnown(now);
  }

  private scopesFor(username: string, client: string, now: number): Scope[] {
    const knownKey = keyOf('account-client', username, client);
    const knownUntil = this.known.get(knownKey);
    if (knownUntil !== undefined && knownUntil <= now) this.known.delete(knownKey);
    return knownUntil !== undefined && knownUntil > now ? ['account-client'] : ['account-client', 'account', 'client'];
  }

  /** The counter, or undefined once it has expired (and then it is dropped). */
  private live(key: string, now: number): Counter | undefined {
    const counter = this.counters.get(key);
    if (counter && this.expired(counter, now)) {
      this.counters.delete(key);
      return undefined;
    }
    return counter;
  }

  private expired(counter: Counter, now: number): boolean {
    if (counter.lockedUntil > now) return false;
    const life = counter.scope === 'client' ? this.config.perClient.windowSeconds : this.config.forgetAfterSeconds;
    return now - counter.since >= life * 1000;
  }

  /**
   * Over the cap, sweeps down to 90% of it so that the O(n) passes are paid once per many inserts.
   * Locked counters go last: dropping one would hand its attacker a fresh set of free failures.
   */
  private evict(now: number): void {
    if (this.counters.size <= this.config.maxEntries) return;
    const target = Math.floor(this.config.maxEntries * 0.9);
    for (const [key, counter] of this.counters) if (this.expired(counter, now)) this.counters.delete(key);
    for (const unlockedOnly of [true, false]) {
      for (const [key, counter] of this.counters) {
        if (this.counters.size <= target) return;
        if (!unlockedOnly || counter.lockedUntil <= now) this.counters.delete(key);
      }
    }
  }

  private evictKnown(now: number): void {
    if (this.known.size <= this.config.maxEntries) return;
    for (const [key, until] of this.known) if (until <= now) this.known.delete(key);
    for (const key of this.known.keys()) {
      if (this.known.size <= this.config.maxEntries) break;
      this.known.delete(key);
    }
  }
}

/** The lockout log line: who and from where, until when; never anything typed into the password field. */
export function logLockout(logger: Logger): (event: LockoutEvent) => void {
  return ({ scope, username, client, until, failures }) =>
    logger.warn({ event: 'review_login_locked', scope, username, client, until: until.toISOString(), failures }, 'review console sign-in locked after repeated failures');
}
