/**
 * The serving nodes' log summary (nodes/shared/log-summary): the first refusal at once,
 * then one line per interval with counts per reason, and nothing while all is quiet.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "mocha";
import { mock } from "node:test";
import { formatCounts, LogSummary, type SummaryLine } from "../../nodes/shared/log-summary";

describe("LogSummary", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("logs the first refusal at once and the rest as one line per interval", () => {
    const lines: SummaryLine[] = [];
    const s = new LogSummary((l) => lines.push(l), 60_000);
    s.count("encoding");
    assert.deepEqual(lines, [{ first: "encoding", seconds: 60 }]);
    for (let i = 0; i < 1000; i++) s.count(i % 4 ? "too-large" : "throttled");
    assert.equal(lines.length, 1);
    mock.timers.tick(60_000);
    assert.deepEqual(lines[1], { counts: { "too-large": 750, throttled: 250 }, total: 1000, seconds: 60 });
    assert.equal(formatCounts(lines[1].counts ?? {}), "too-large 750, throttled 250");
    // Still refusing: counted, not logged at once.
    s.count("throttled");
    assert.equal(lines.length, 2);
    mock.timers.tick(60_000);
    assert.deepEqual(lines[2], { counts: { throttled: 1 }, total: 1, seconds: 60 });
    // A quiet interval: nothing is written, and the next refusal is logged at once again.
    mock.timers.tick(60_000);
    mock.timers.tick(60_000);
    assert.equal(lines.length, 3);
    s.count("encoding");
    assert.deepEqual(lines[3], { first: "encoding", seconds: 60 });
    s.count("encoding");
    s.close();
    assert.deepEqual(lines[4], { counts: { encoding: 1 }, total: 1, seconds: 60 });
    s.count("encoding");
    mock.timers.tick(600_000);
    assert.equal(lines.length, 5);
  });
});
