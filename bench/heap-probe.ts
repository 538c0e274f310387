// Preloaded (`node --expose-gc -r dist/bench/heap-probe.js dist/src/main.js`) into a gateway
// process a test or the soak wants to measure: on SIGUSR2 it collects garbage and prints one line
// `HEAP-PROBE {"heapUsed":…,"rss":…,"external":…}` on stdout. Nothing else changes in the process.

const collect = (globalThis as { gc?: () => void }).gc;

process.on('SIGUSR2', () => {
  collect?.();
  collect?.();
  const m = process.memoryUsage();
  process.stdout.write(`HEAP-PROBE ${JSON.stringify({ heapUsed: m.heapUsed, rss: m.rss, external: m.external, gc: Boolean(collect) })}\n`);
});
