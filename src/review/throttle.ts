/**
 * Failed sign-in throttling for the review console, without express.
 *
 * Why several limits, and why not one per address: analysts sit behind one office NAT, so a limit on
 * the client address alone let anyone in the office (or one mistyping colleague) lock the whole team
 * out. The limits are instead:
 *
 * - per (account, client): the one that stops a guesser at one address. A few free failures, then a
 *   delay that doubles with each further failure up to a cap.
 * - per account, across clients: the one that slows a guesser spread over many addresses. More free
 *   failures (several analysts' typos), then the same doubling, but to a lower cap: this limit is the
 *   one an attacker can trigger for somebody else, so what it costs the analyst is bounded.
 * - per client, across accounts: a fixed window with a count far above any office's typos, so one
 *   address cannot try a few passwords on every account.
 * - per (account, device): the only one a trusted device answers to (below).
 *
 * Trusted devices (the OWASP "device cookie"): a successful sign-in gives the browser a signed cookie
 * naming the account (auth.ts mints and checks it). An attempt that presents a valid one for the
 * username it tries is counted and held on that device's own counter only, never on the three above.
 * An address is not an identity: behind the office NAT the attacker and the victim are the same
 * client, so the first three limits are all the attacker's to exhaust, and only something the
 * victim's browser holds can tell the two apart. Whatever anyone without the cookie does, from any
 * address, the analyst's own browser still signs in. A device that fails perDevice.freeFailures times
 * itself is locked like any (account, client) pair and is no longer trusted for that account until a
 * sign-in succeeds (a stolen cookie buys no more guesses than an address does); meanwhile its attempts
 * go through the other limits like any stranger's.
 *
 * A client address from which an account signed in successfully recently is "known" for that account:
 * the account-wide and client-wide limits do not hold it back, only its own (account, client) limit
 * does, so a browser that lost its cookie (another browser, cookies cleared) is not locked out of the
 * office by a botnet spraying the account. Nothing here depends on whether the account exists: an
 * unknown username is counted, delayed and locked exactly like a real one, never becomes known and can
 * hold no device cookie (only a successful sign-in mints one), so the answers do not tell an attacker
 * which names are accounts.
 *
 * State lives in memory (one replica; a restart starts every count over). The table is capped: expired
 * counters go first, then the least recently failed ones that are neither locked nor an untrusted
 * device, then the rest. Known clients are kept apart, so a flood of made-up usernames cannot push
 * them out.
 *
 * `now` only ever measures durations here (locks, windows), so auth.ts hands in a monotonic clock
 * unless a test injects one: a wall clock stepped back by NTP would lengthen every lock.
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
  /** One account from one trusted device (a valid device cookie). */
  perDevice: BackoffLimit;
  /** A backoff counter with no failure for this long (and no lock) starts over. */
  forgetAfterSeconds: number;
  /** How long a successful sign-in makes its client known for that account. */
  knownClientSeconds: number;
  /** A device cookie's lifetime (auth.ts); an untrusted device is remembered at least this long. */
  deviceCookieSeconds: number;
  /** Counters kept at most (and, separately, known clients). */
  maxEntries: number;
}

type Scope = 'account-client' | 'account' | 'client' | 'account-device';

interface Counter {
  scope: Scope;
  failures: number;
  /** Backoff: the latest failure. Window: the window's start. */
  since: number;
  lockedUntil: number;
  /** account-device only: it reached its limit, so its cookie no longer vouches for the account. */
  untrusted?: boolean;
}

/** One attempt in flight: counted before the slow password check, settled after it. */
export interface Attempt {
  readonly username: string;
  readonly client: string;
  /** The id of the valid device cookie presented for this username, if any (trusted or not). */
  readonly device: string | undefined;
  readonly changes: Array<{ key: string; previousLock: number; lock: number }>;
}

export interface LockoutEvent { scope: Scope; username: string; client: string; device?: string; until: Date; failures: number }

const UNTRUSTED_SCOPES = ['account-client', 'account', 'client'] as const;

const keyOf = (scope: Scope, username: string, client: string, device = ''): string =>
  scope === 'account-client' ? `p\u0000${username}\u0000${client}`
    : scope === 'account' ? `a\u0000${username}`
      : scope === 'client' ? `c\u0000${client}`
        : `d\u0000${username}\u0000${device}`;

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

  /**
   * Seconds until `username` may be tried from `client` again; 0 when nothing holds it back.
   * `device` is the id of a device cookie that auth.ts has verified for this very username.
   */
  retryAfter(username: string, client: string, device?: string): number {
    const now = this.now();
    let until = 0;
    for (const scope of this.scopesFor(username, client, device, now).held) {
      const counter = this.live(keyOf(scope, username, client, device), now);
      if (counter && counter.lockedUntil > now) until = Math.max(until, counter.lockedUntil);
    }
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  /**
   * Counts the attempt as a failure before the password is checked, so a burst of parallel guesses
   * cannot all pass the check together. A trusted device counts on its own counter only; any other
   * attempt counts in every untrusted scope, known client or not: a typo is a failure.
   */
  begin(username: string, client: string, device?: string): Attempt {
    const now = this.now();
    const changes: Attempt['changes'] = [];
    for (const scope of this.scopesFor(username, client, device, now).counted) {
      const key = keyOf(scope, username, client, device);
      const counter = this.live(key, now) ?? { scope, failures: 0, since: now, lockedUntil: 0 };
      const previousLock = counter.lockedUntil;
      counter.failures += 1;
      if (scope === 'client') {
        if (counter.failures >= this.config.perClient.maxFailures) counter.lockedUntil = counter.since + this.config.perClient.windowSeconds * 1000;
      } else {
        const limit = scope === 'account' ? this.config.perAccount : scope === 'account-device' ? this.config.perDevice : this.config.perAccountClient;
        counter.since = now;
        const over = counter.failures - limit.freeFailures;
        // 2 ** over overflows to Infinity long after the cap is reached, and min() takes care of that.
        if (over >= 0) counter.lockedUntil = now + Math.min(limit.maxDelaySeconds, limit.baseDelaySeconds * 2 ** over) * 1000;
        // Set here, not when the password turns out wrong, so that parallel guesses cannot slip past it;
        // a right password in this very attempt clears it again (succeeded drops the counter).
        if (over >= 0 && scope === 'account-device') counter.untrusted = true;
      }
      this.counters.delete(key); // re-inserted, so the Map's order is least recently failed first
      this.counters.set(key, counter);
      changes.push({ key, previousLock, lock: counter.lockedUntil });
    }
    this.evict(now);
    return { username, client, device, changes };
  }

  /** The password was wrong: the attempt stays counted, and any lock it started is reported. */
  failed(attempt: Attempt): void {
    for (const { key, previousLock, lock } of attempt.changes) {
      const counter = this.counters.get(key);
      if (!counter || lock <= previousLock || counter.lockedUntil !== lock) continue;
      const device = counter.scope === 'account-device' ? { device: attempt.device } : {};
      this.onLockout({ scope: counter.scope, username: attempt.username, client: attempt.client, ...device, until: new Date(lock), failures: counter.failures });
    }
  }

  /**
   * The password was right. This client and this device proved themselves for this account: their
   * counts start over (the device is trusted again) and the client becomes known. The account's and
   * the client's counts only lose this attempt; their earlier failures may have been someone else's
   * guesses, and for the same reason a trusted device's success leaves the (account, client) count
   * alone: behind a NAT it is the attacker's count too, and clearing it would hand them fresh guesses.
   */
  succeeded(attempt: Attempt): void {
    const now = this.now();
    for (const { key, previousLock, lock } of attempt.changes) {
      const counter = this.counters.get(key);
      if (!counter) continue;
      if (counter.scope === 'account-client' || counter.scope === 'account-device') {
        this.counters.delete(key);
        continue;
      }
      counter.failures = Math.max(0, counter.failures - 1);
      if (counter.lockedUntil === lock) counter.lockedUntil = previousLock;
    }
    // An untrusted device signed in the way a stranger does; it is trusted again (auth.ts also gives
    // it a new cookie, whose id starts with no counter at all).
    if (attempt.device !== undefined) this.counters.delete(keyOf('account-device', attempt.username, attempt.client, attempt.device));
    const knownKey = keyOf('account-client', attempt.username, attempt.client);
    this.known.delete(knownKey);
    this.known.set(knownKey, now + this.config.knownClientSeconds * 1000);
    this.evictKnown(now);
  }

  /**
   * Which counters hold an attempt back and which it counts on. A trusted device: its own counter,
   * both. An untrusted device: its own lock still holds until it lapses, and otherwise it is a
   * stranger. A stranger: every untrusted scope counts, and holds unless the client is known.
   */
  private scopesFor(username: string, client: string, device: string | undefined, now: number): { held: Scope[]; counted: readonly Scope[] } {
    if (device !== undefined && !this.live(keyOf('account-device', username, client, device), now)?.untrusted) return { held: ['account-device'], counted: ['account-device'] };
    const knownKey = keyOf('account-client', username, client);
    const knownUntil = this.known.get(knownKey);
    if (knownUntil !== undefined && knownUntil <= now) this.known.delete(knownKey);
    const held: Scope[] = knownUntil !== undefined && knownUntil > now ? ['account-client'] : [...UNTRUSTED_SCOPES];
    if (device !== undefined) held.push('account-device');
    return { held, counted: UNTRUSTED_SCOPES };
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
    // An untrusted device is remembered until its cookie must have expired (it was minted before its
    // last failure), so waiting a day does not make a stolen cookie trusted again.
    const life = counter.scope === 'client' ? this.config.perClient.windowSeconds
      : counter.untrusted ? Math.max(this.config.forgetAfterSeconds, this.config.deviceCookieSeconds) : this.config.forgetAfterSeconds;
    return now - counter.since >= life * 1000;
  }

  /**
   * Over the cap, sweeps down to 90% of it so that the O(n) passes are paid once per many inserts.
   * Locked counters and untrusted devices go last: dropping one would hand its attacker a fresh set of
   * free failures, or make a stolen cookie trusted again.
   */
  private evict(now: number): void {
    if (this.counters.size <= this.config.maxEntries) return;
    const target = Math.floor(this.config.maxEntries * 0.9);
    for (const [key, counter] of this.counters) if (this.expired(counter, now)) this.counters.delete(key);
    for (const harmlessOnly of [true, false]) {
      for (const [key, counter] of this.counters) {
        if (this.counters.size <= target) return;
        if (!harmlessOnly || (counter.lockedUntil <= now && !counter.untrusted)) this.counters.delete(key);
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
  return ({ scope, username, client, device, until, failures }) =>
    logger.warn({ event: 'review_login_locked', scope, username, client, ...(device ? { device } : {}), until: until.toISOString(), failures }, 'review console sign-in locked after repeated failures');
}
