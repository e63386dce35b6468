/**
 * Address rules for the SSRF-guarded fetcher: which resolved addresses a user-supplied image URL
 * may reach, and which allowlist entries exempt a host from that rule.
 *
 * Addresses are compared as BigInts (32-bit for IPv4, 128-bit for IPv6) so CIDR tests are plain
 * shifts. Anything that does not parse as a canonical IP is treated as forbidden: these rules
 * guard a security boundary, so an input we do not understand must fail closed.
 */
import { isIP } from 'node:net';

type Parsed = { version: 4 | 6; value: bigint };
type Cidr = { version: 4 | 6; value: bigint; prefix: number };

const V4_FORBIDDEN: readonly Cidr[] = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the local host on Linux
  '10.0.0.0/8',
  '100.64.0.0/10', // carrier-grade NAT, often cluster-internal
  '127.0.0.0/8',
  '169.254.0.0/16', // link-local, incl. the 169.254.169.254 cloud metadata endpoint
  '172.16.0.0/12',
  '192.0.0.0/24', // IETF protocol assignments (e.g. 192.0.0.192 Oracle metadata)
  '192.168.0.0/16',
  '198.18.0.0/15', // benchmarking, used as internal space in some clouds
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, incl. 255.255.255.255 broadcast
].map(mustParseCidr);

const V6_FORBIDDEN: readonly Cidr[] = [
  '::/96', // ::, ::1 and the deprecated IPv4-compatible form, which no public host uses
  '64:ff9b:1::/48', // local-use NAT64 (RFC 8215): translates into site-internal IPv4
  '100::/64', // discard-only
  '2001::/32', // Teredo: the tunnelled IPv4 endpoint is obfuscated, so it cannot be vetted
  'fc00::/7', // unique local, incl. fd00:ec2::254 (AWS IMDS over IPv6)
  'fe80::/10', // link-local
  'fec0::/10', // deprecated site-local, still routed by some stacks
  'ff00::/8', // multicast
].map(mustParseCidr);

// Prefixes whose low bits carry an IPv4 address the packet ends up at: judge that address.
const V4_MAPPED = mustParseCidr('::ffff:0:0/96');
const NAT64_WELL_KNOWN = mustParseCidr('64:ff9b::/96');
const SIX_TO_FOUR = mustParseCidr('2002::/16');

const MASK32 = 0xffffffffn;

export function isForbiddenAddress(ip: string): boolean {
  const parsed = parseIp(ip);
  if (!parsed) return true;
  if (parsed.version === 4) return V4_FORBIDDEN.some((c) => inCidr(parsed, c));
  const embedded = embeddedIPv4(parsed.value);
  if (embedded !== null) return isForbiddenAddress(v4ToString(embedded));
  return V6_FORBIDDEN.some((c) => inCidr(parsed, c));
}

/**
 * Allowlist built from FetcherOptions.allowlist. Host-name entries exempt a URL's host whatever
 * it resolves to (an operator vouching for an in-cluster store); IP and CIDR entries exempt only
 * the resolved addresses that fall inside them.
 */
export class Allowlist {
  private readonly hosts = new Set<string>();
  private readonly ranges: Cidr[] = [];

  constructor(entries: readonly string[] = []) {
    for (const raw of entries) {
      const entry = raw.trim();
      const unbracketed = entry.replace(/^\[(.*)\]$/, '$1');
      if (entry.includes('/')) {
        const cidr = parseCidr(entry);
        // A typo here would silently widen or narrow the exemption; refuse to start instead.
        if (!cidr) throw new TypeError(`Invalid CIDR in fetcher allowlist: ${JSON.stringify(raw)}`);
        this.ranges.push(cidr);
      } else if (isIP(unbracketed)) {
        const p = parseIp(unbracketed)!;
        this.ranges.push({ ...p, prefix: p.version === 4 ? 32 : 128 });
      } else if (entry) {
        this.hosts.add(normaliseHost(entry));
      }
    }
  }

  allowsHost(hostname: string): boolean {
    return this.hosts.has(normaliseHost(hostname));
  }

  allowsAddress(ip: string): boolean {
    const parsed = parseIp(ip);
    if (!parsed) return false;
    const asV4 = parsed.version === 6 && inCidr(parsed, V4_MAPPED) ? { version: 4 as const, value: parsed.value & MASK32 } : null;
    return this.ranges.some((c) => inCidr(parsed, c) || (asV4 !== null && inCidr(asV4, c)));
  }
}

export function normaliseHost(hostname: string): string {
  return hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

function embeddedIPv4(v6: bigint): bigint | null {
  const p: Parsed = { version: 6, value: v6 };
  if (inCidr(p, V4_MAPPED) || inCidr(p, NAT64_WELL_KNOWN)) return v6 & MASK32;
  if (inCidr(p, SIX_TO_FOUR)) return (v6 >> 80n) & MASK32;
  return null;
}

function inCidr(addr: Parsed, cidr: Cidr): boolean {
  if (addr.version !== cidr.version) return false;
  const shift = BigInt((addr.version === 4 ? 32 : 128) - cidr.prefix);
  return addr.value >> shift === cidr.value >> shift;
}

function parseIp(input: string): Parsed | null {
  // Resolvers may hand back scoped link-local addresses (fe80::1%eth0); the scope does not
  // change which network the address is on.
  const ip = input.replace(/%.*$/, '');
  const version = isIP(ip);
  if (version === 4) return { version: 4, value: parseV4(ip) };
  if (version === 6) return { version: 6, value: parseV6(ip) };
  return null;
}

function parseV4(ip: string): bigint {
  return ip.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

// Only called after net.isIP() accepted the string, so it has at most one "::" and valid groups.
function parseV6(ip: string): bigint {
  const text = ip
    .toLowerCase()
    .replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
      `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`);
  const [head, tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function parseCidr(text: string): Cidr | null {
  const [addr, bits, extra] = text.split('/');
  if (addr === undefined || bits === undefined || extra !== undefined || !/^\d{1,3}$/.test(bits)) return null;
  const parsed = parseIp(addr.replace(/^\[(.*)\]$/, '$1'));
  const prefix = Number(bits);
  if (!parsed || prefix > (parsed.version === 4 ? 32 : 128)) return null;
  return { ...parsed, prefix };
}

function mustParseCidr(text: string): Cidr {
  const cidr = parseCidr(text);
  if (!cidr) throw new Error(`bad built-in CIDR ${text}`);
  return cidr;
}

function v4ToString(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
}
