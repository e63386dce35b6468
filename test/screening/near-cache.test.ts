import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NearCache } from '../../src/screening/near-cache.js';

/** A hash with the lowest `n` bits flipped (the high half untouched when n < 32, both halves past it). */
const flip = (hash: bigint, n: number) => hash ^ ((1n << BigInt(n)) - 1n);
const H = 0xb3d3cc8cce31cc8cn;

describe('the near-duplicate index', () => {
  test('finds the closest entry within the distance, across both 32-bit halves, and nothing beyond it', () => {
    const cache = new NearCache<string>(10, 60_000);
    cache.set(H, 'g1', 'a', 'A');
    cache.set(flip(H, 40), 'g1', 'b', 'B');
    assert.deepEqual(cache.find(flip(H, 3), 'g1', 4), { value: 'A', sha256: 'a', distance: 3 });
    assert.deepEqual(cache.find(flip(H, 37), 'g1', 4), { value: 'B', sha256: 'b', distance: 3 });
    assert.equal(cache.find(flip(H, 5), 'g1', 4), undefined);
    assert.deepEqual(cache.find(H, 'g1', 0), { value: 'A', sha256: 'a', distance: 0 });
    assert.equal(cache.find(flip(H, 1), 'g1', 0), undefined, 'distance 0 answers the same pHash only');
  });

  test('a decision is found only by a look-up from the models that made it', () => {
    const cache = new NearCache<string>(10, 60_000);
    cache.set(H, 'g1:lite0@1.0.0', 'a', 'A');
    assert.equal(cache.find(H, 'g2:lite0@1.0.0', 10), undefined);
    assert.equal(cache.find(H, 'g1:lite0@1.0.0', 10)?.value, 'A');
  });

  test('between equally close entries the most recent wins, and a closer older one beats both', () => {
    const cache = new NearCache<string>(10, 60_000);
    cache.set(flip(H, 2), 'g', 'old', 'old');
    cache.set(flip(H, 2), 'g', 'new', 'new');
    assert.equal(cache.find(H, 'g', 4)?.sha256, 'new');
    cache.set(flip(H, 1), 'g', 'closer', 'closer');
    cache.set(flip(H, 3), 'g', 'newest', 'newest');
    assert.equal(cache.find(H, 'g', 4)?.sha256, 'closer');
  });

  test('holds at most its capacity: the oldest entry goes first, even one that was just found', () => {
    const cache = new NearCache<number>(3, 60_000);
    for (let i = 0; i < 3; i++) cache.set(BigInt(i) << 40n, 'g', String(i), i);
    assert.equal(cache.find(0n, 'g', 0)?.value, 0);
    cache.set(BigInt(3) << 40n, 'g', '3', 3);
    assert.equal(cache.size, 3);
    assert.equal(cache.find(0n, 'g', 0), undefined);
    assert.deepEqual([1, 2, 3].map((i) => cache.find(BigInt(i) << 40n, 'g', 0)?.value), [1, 2, 3]);
  });

  test('entries expire after the TTL, and clear() forgets everything', () => {
    let now = 1000;
    const cache = new NearCache<string>(10, 500, () => now);
    cache.set(H, 'g', 'a', 'A');
    now = 1499;
    assert.equal(cache.find(H, 'g', 0)?.value, 'A');
    now = 1500;
    assert.equal(cache.find(H, 'g', 0), undefined);
    assert.equal(cache.size, 0, 'the expired entry was dropped when a look-up reached it');
    cache.set(H, 'g', 'b', 'B');
    cache.clear();
    assert.equal(cache.size, 0);
    assert.equal(cache.find(H, 'g', 64), undefined);
  });
});
