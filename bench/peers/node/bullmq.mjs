// BullMQ side of reelq's peers benchmark, run by bench/peers (bullmq.go):
// enqueue JOBS jobs with addBulk in batches of 1,000, each with its jobId
// (BullMQ's dedupe), then work them with a Worker of CONCURRENCY and a
// handler that returns at once, to the JOBS-th "completed" event. Prints
// the phases, this process's CPU and redis-server's (REDIS_PID, /proc) as
// one JSON line.
import { readFileSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const [host, port] = env('REDIS_ADDR').split(':');
const redisPid = env('REDIS_PID');
const jobs = Number(env('JOBS'));
const concurrency = Number(env('CONCURRENCY'));
// BullMQ 6 takes a constructed client in an ES module; ioredis is its own.
const connect = () => new IORedis({ host, port: Number(port), maxRetriesPerRequest: null });

// Server CPU in seconds: utime + stime + cutime + cstime (USER_HZ 100).
const serverCPU = () => {
  const s = readFileSync(`/proc/${redisPid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
};
const clientCPU = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const mark = () => ({ t: performance.now() / 1e3, client: clientCPU(), server: serverCPU() });

const id = (i) => `bench-${String(i).padStart(7, '0')}`;
const input = (i) => ({ prompt: `benchmark shot ${i} of a long series of shots`, image_model: 'FLUX1.1PRO', video_model: 'LUMA', duration: 10 });

const queue = new Queue('bench', { connection: connect() });
await queue.waitUntilReady();
const m0 = mark();
for (let lo = 0; lo < jobs; lo += 1000) {
  const batch = [];
  for (let i = lo; i < Math.min(lo + 1000, jobs); i++) {
    batch.push({ name: 'video', data: input(i), opts: { jobId: id(i), attempts: 3 } });
  }
  await queue.addBulk(batch);
}
const m1 = mark();
let done = 0;
let finish;
const finished = new Promise((resolve) => { finish = resolve; });
const worker = new Worker('bench', async () => {}, { connection: connect(), concurrency, autorun: false });
worker.on('completed', () => {
  if (++done === jobs) finish();
});
worker.on('failed', (job, err) => { console.error(`job ${job?.id} failed: ${err}`); process.exit(1); });
worker.run();
await finished;
const m2 = mark();
await worker.close();
// The dedupe, checked untimed: a finished job keeps its id.
await queue.add('video', input(0), { jobId: id(0) });
const counts = await queue.getJobCounts();
const total = Object.values(counts).reduce((a, b) => a + b, 0);
if (total !== jobs) throw new Error(`dedupe: ${total} jobs after adding ${id(0)} again, want ${jobs}`);
await queue.close();
process.stdout.write(JSON.stringify({
  enqueue_s: m1.t - m0.t,
  e2e_s: m2.t - m1.t,
  client_cpu_s: m2.client - m1.client,
  server_cpu_s: m2.server - m1.server,
  client_tot_s: m2.client - m0.client,
  server_tot_s: m2.server - m0.server,
}) + '\n');
process.exit(0); // the passed-in connections would keep the process alive
