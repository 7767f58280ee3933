// The k6 equivalent of `voxperf load jobs`: uploads at a constant arrival rate, each job polled
// until it is done. Latency comes from the server's own created_at/completed_at (no poll
// quantisation) as the custom trend `job_ms`; a failed, cancelled or never-finishing job counts in
// `job_failed`, a rate that can rise (the success rate can fall). Knobs as environment variables:
//
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e AUDIO=utterance.wav -e ARRIVAL_RATE=2 \
//          -e DURATION=60s --summary-export k6-summary.json examples/k6/jobs.js
//
// `voxperf gate --base base-summary.json head-summary.json` compares two such summaries by allowed
// drift (a summary holds no samples, so no confidence intervals).
import http from 'k6/http';
import { sleep } from 'k6';
import { Rate, Trend } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const POLL_INTERVAL = Number(__ENV.POLL_INTERVAL || 0.1);
const MAX_POLLS = Number(__ENV.MAX_POLLS || 600);
const audio = open(__ENV.AUDIO || 'utterance.wav', 'b');

const jobMs = new Trend('job_ms', true);
const jobFailed = new Rate('job_failed');

export const options = {
  scenarios: {
    jobs: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.ARRIVAL_RATE || 2),
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: Number(__ENV.PRE_ALLOCATED_VUS || 20),
      maxVUs: Number(__ENV.MAX_VUS || 100),
    },
  },
  thresholds: { job_failed: ['rate<0.01'], job_ms: ['p(95)<5000'] },
};

export default function () {
  const upload = http.post(`${BASE_URL}/v1/jobs`, {
    file: http.file(audio, 'utterance.wav', 'audio/wav'),
    level: 'raw',
  });
  if (upload.status !== 202) {
    jobFailed.add(true);
    return;
  }
  const id = upload.json('id');
  for (let i = 0; i < MAX_POLLS; i++) {
    sleep(POLL_INTERVAL);
    const poll = http.get(`${BASE_URL}/v1/jobs/${id}`, { tags: { name: 'poll' } });
    if (poll.status !== 200) continue;
    const job = poll.json();
    if (job.status === 'done' || job.status === 'failed' || job.status === 'cancelled') {
      const done = job.status === 'done';
      jobFailed.add(!done);
      if (done) jobMs.add((job.completed_at - job.created_at) * 1000);
      return;
    }
  }
  jobFailed.add(true); // never finished: a failure, not a silent omission
}
