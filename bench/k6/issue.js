// The original design's k6 profile: 10 s up to 500 virtual users, 10 s up to 3000, 10 s at 3000,
// 10 s down; each user sends one request, then sleeps 1 s; threshold p99 < 100 ms.
// Run by bench/k6/run.sh, once per target:
//   TARGET=issue     POST /v1/coupons/$COUPON_ID/issue, every request a new user "$RUN-$VU-$ITER"
//   TARGET=constant  GET /healthz, the same framework answering a constant
// Env: BASE_URL (http://127.0.0.1:PORT), TARGET, COUPON_ID and RUN (issue), SUMMARY (JSON file
// handleSummary writes for the runner).
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const TARGET = __ENV.TARGET || 'issue';
const COUPON_ID = __ENV.COUPON_ID;
const RUN = __ENV.RUN || 'k6';

if (TARGET !== 'issue' && TARGET !== 'constant') {
    throw new Error(`TARGET must be issue or constant, not ${TARGET}`);
}
if (TARGET === 'issue' && !COUPON_ID) {
    throw new Error('TARGET=issue needs COUPON_ID');
}

export const options = {
    stages: [
        { duration: '10s', target: 500 },
        { duration: '10s', target: 3000 },
        { duration: '10s', target: 3000 },
        { duration: '10s', target: 0 },
    ],
    thresholds: {
        http_req_duration: ['p(99)<100'],
        // Always true: they only make k6 keep the latency of each 10 s stage apart in the summary.
        'http_req_duration{stage:1}': ['max>=0'],
        'http_req_duration{stage:2}': ['max>=0'],
        'http_req_duration{stage:3}': ['max>=0'],
        'http_req_duration{stage:4}': ['max>=0'],
    },
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

// 201 issued now, 200 already held (not expected: every user is new), 409 sold out. Anything else,
// and a transport error (status 0), counts in http_req_failed and answers_other.
http.setResponseCallback(TARGET === 'issue' ? http.expectedStatuses(200, 201, 409) : http.expectedStatuses(200));

const answers = {
    issued201: new Counter('answers_201_issued'),
    held200: new Counter('answers_200'),
    soldOut409: new Counter('answers_409'),
    other: new Counter('answers_other'),
};
// Latency by answer: the first 1000 winners wait for a commit; sold-out rejects come from memory.
const issuedDuration = new Trend('duration_201_issued', true);
const soldOutDuration = new Trend('duration_409_sold_out', true);

export default function () {
    // 1 to 4: the stage this request starts in (the last one also takes the graceful ramp-down).
    const stage = String(Math.min(4, 1 + Math.floor(exec.instance.currentTestRunDuration / 10000)));
    let response;
    if (TARGET === 'issue') {
        const body = JSON.stringify({ user_id: `${RUN}-${__VU}-${__ITER}` });
        response = http.post(`${BASE_URL}/v1/coupons/${COUPON_ID}/issue`, body,
            { headers: { 'Content-Type': 'application/json' }, tags: { name: 'issue', stage } });
    } else {
        response = http.get(`${BASE_URL}/healthz`, { tags: { name: 'healthz', stage } });
    }
    switch (response.status) {
        case 201:
            answers.issued201.add(1);
            issuedDuration.add(response.timings.duration);
            break;
        case 200:
            answers.held200.add(1);
            break;
        case 409:
            answers.soldOut409.add(1);
            soldOutDuration.add(response.timings.duration);
            break;
        default:
            answers.other.add(1, { status: String(response.status) });
    }
    sleep(1);
}

function value(data, metric, stat) {
    const m = data.metrics[metric];
    return m && m.values[stat] !== undefined ? m.values[stat] : 0;
}

export function handleSummary(data) {
    const ok = Object.values(data.metrics.http_req_duration.thresholds || {}).every((t) => t.ok);
    const d = (stat) => value(data, 'http_req_duration', stat).toFixed(2);
    const line = `${TARGET}: ${value(data, 'http_reqs', 'count')} requests, ` +
        `${value(data, 'http_reqs', 'rate').toFixed(0)}/s, p50 ${d('med')} ms, p99 ${d('p(99)')} ms, ` +
        `max ${d('max')} ms; 201 ${value(data, 'answers_201_issued', 'count')}, ` +
        `200 ${value(data, 'answers_200', 'count')}, 409 ${value(data, 'answers_409', 'count')}, ` +
        `other ${value(data, 'answers_other', 'count')}; threshold p(99)<100 ${ok ? 'passed' : 'FAILED'}\n`;
    const out = { stdout: line };
    if (__ENV.SUMMARY) {
        out[__ENV.SUMMARY] = JSON.stringify(data, null, 1);
    }
    return out;
}
