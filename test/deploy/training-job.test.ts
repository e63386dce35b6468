import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { loadTrainConfig } from '../../src/training/config.js';
import { REPO_ROOT } from '../../src/config.js';
import { renderKustomization } from './kustomize.js';
import { K8S_DIR } from './manifests.js';

test('the GPU training Job renders, validates, runs data-parallel on all its GPUs, and resumes on retry', async () => {
  // The kustomization also holds the SSLD loop's workloads (ssld-loop.test.ts).
  const resources = renderKustomization(path.join(K8S_DIR, 'training'));
  const jobs = resources.filter((r) => r.kind === 'Job' && r.metadata.name === 'wildlife-train-gpu');
  assert.equal(jobs.length, 1);
  const job = jobs[0]!;
  new Job(job as never).validate();
  const pod = (job.spec as any).template.spec;
  assert.equal(pod.restartPolicy, 'Never');
  const container = pod.containers[0];
  const args: string[] = container.args;
  const arg = (name: string) => args[args.indexOf(name) + 1];
  assert.equal(Number(arg('--nproc')), Number(container.resources.limits['nvidia.com/gpu']), 'one worker per GPU');
  assert.ok(args.includes('--resume'), 'a retried pod continues from its checkpoint');
  // The config it names is one the toolchain accepts.
  await loadTrainConfig(path.join(REPO_ROOT, arg('--config')!));
  const mounts = new Set(container.volumeMounts.map((m: { mountPath: string }) => m.mountPath));
  for (const p of ['/data', '/models', '/dev/shm']) assert.ok(mounts.has(p), `mount ${p}`);
  for (const flag of ['--data', '--work']) assert.ok(arg(flag)!.startsWith('/data/'), `${flag} on the data volume`);
  assert.ok(arg('--out')!.startsWith('/models/'));
});
