// The resume algorithm of notify's client module (notify/src/page/alerts.js) against a
// scripted socket that does what a server might: live events before the snapshot,
// repeats, an event after its newer successor, a lost epoch. The module must not rely
// on the server's ordering. Run: node --test alerts-module.test.mjs
import { readFile } from "node:fs/promises";
import assert from "node:assert/strict";
import test from "node:test";

// The module as the browser gets it (an ES module whatever package.json says).
const source = await readFile(new URL("../../src/page/alerts.js", import.meta.url), "utf8");
const { AlertStream, compareOffsets } = await import(`data:text/javascript,${encodeURIComponent(source)}`);

// The parts of socket.io-client's Socket the module uses.
class ScriptedSocket {
  handlers = new Map();
  connected = false;
  active = false;
  auth = { token: "t" };
  handshakes = [];
  on(name, handler) {
    this.handlers.set(name, [...(this.handlers.get(name) || []), handler]);
    return this;
  }
  fire(name, payload) {
    for (const handler of this.handlers.get(name) || []) handler(payload);
  }
  connect() { // the handshake: `auth` is asked for at every attempt
    this.active = true;
    this.auth((data) => this.handshakes.push(data));
    this.connected = true;
    this.fire("connect");
    return this;
  }
  disconnect() {
    this.connected = false;
    this.fire("disconnect", "io client disconnect");
    return this;
  }
  drop(reason = "transport close") {
    this.connected = false;
    this.fire("disconnect", reason);
  }
}

const window = (location, end, types = ["Rocket Alert"]) => ({
  id: `w-${location}`, location, startTime: "2026-11-22T10:00:00Z", endTime: end,
  sentTime: "2026-11-22T10:00:00Z", duration: end, types, alertCount: 1,
});
const event = (offset, eventType, location, end, epoch = "e1") => ({
  offset, epoch, eventType, location, windowId: `w-${location}`, type: "Rocket Alert",
  startTime: "2026-11-22T10:00:00Z", endTime: end, types: ["Rocket Alert"], alertCount: 1,
});

function follow(socket, locations = ["A", "B"]) {
  const alerts = new AlertStream(socket, { locations });
  const seen = [];
  const resyncs = [];
  alerts.addEventListener("alert", ({ detail }) => seen.push(detail.offset));
  alerts.addEventListener("resync", ({ detail }) => resyncs.push(detail));
  const ends = () => Object.fromEntries([...alerts.windows].map(([l, w]) => [l, w.endTime]));
  return { alerts, seen, resyncs, ends };
}

test("offsets compare as numbers, ms then seq", () => {
  assert.ok(compareOffsets("999-0", "1000-0") < 0);
  assert.ok(compareOffsets("5-9", "5-10") < 0);
  assert.equal(compareOffsets("7-1", "7-1"), 0);
});

test("live events before the snapshot wait for it; what it holds is not applied again", () => {
  const socket = new ScriptedSocket();
  const { alerts, seen, ends } = follow(socket);
  assert.deepEqual(socket.handshakes, [{ token: "t", locations: ["A", "B"] }]);
  socket.fire("alert", event("30-0", "update", "A", "10:30")); // overtook the snapshot
  socket.fire("alert", event("10-0", "open", "B", "10:10")); // in the snapshot already
  assert.deepEqual(seen, []);
  socket.fire("snapshot", { epoch: "e1", offset: "20-0", active: [window("A", "10:20"), window("B", "10:10")] });
  assert.deepEqual(seen, ["30-0"]);
  assert.deepEqual(ends(), { A: "10:30", B: "10:10" });
  assert.deepEqual(alerts.since, { epoch: "e1", offset: "30-0" });
});

test("repeats and events older than their location's newest change nothing", () => {
  const socket = new ScriptedSocket();
  const { seen, ends } = follow(socket);
  socket.fire("snapshot", { epoch: "e1", offset: "98-0", active: [] });
  socket.fire("alert", event("99-0", "open", "A", "10:10"));
  socket.fire("alert", event("100-0", "close", "A", "10:10")); // after "99-0" as numbers
  socket.fire("alert", event("99-9", "update", "A", "10:20")); // after its successor
  socket.fire("alert", event("100-0", "close", "A", "10:10")); // twice
  socket.fire("alert", event("99-10", "open", "B", "10:15")); // late, but B's newest
  assert.deepEqual(seen, ["99-0", "100-0", "99-10"]);
  assert.deepEqual(ends(), { B: "10:15" });
});

test("a reconnect resumes from the last event applied and announces what was missed once", () => {
  const socket = new ScriptedSocket();
  const { alerts, seen, resyncs, ends } = follow(socket);
  socket.fire("snapshot", { epoch: "e1", offset: "1-0", active: [] });
  socket.fire("alert", event("2-0", "open", "A", "10:10"));
  socket.fire("alert", event("3-0", "open", "B", "10:10"));
  socket.drop();
  socket.connect();
  assert.deepEqual(socket.handshakes[1], {
    token: "t", locations: ["A", "B"], since: { epoch: "e1", offset: "3-0" },
  });
  socket.fire("alert", event("6-0", "update", "B", "10:40")); // live, before the snapshot
  socket.fire("snapshot", {
    epoch: "e1", offset: "5-0", recovered: true, active: [window("B", "10:30")],
    missed: [event("5-0", "update", "B", "10:30"), event("3-0", "open", "B", "10:10"),
      event("4-0", "close", "A", "10:10")],
  });
  assert.deepEqual(seen, ["2-0", "3-0", "4-0", "5-0", "6-0"]);
  assert.deepEqual(ends(), { B: "10:40" });
  assert.deepEqual(resyncs, []);
  assert.deepEqual(alerts.since, { epoch: "e1", offset: "6-0" });
});

test("a snapshot older than the page's state (a lagging pod) does not take it back", () => {
  const socket = new ScriptedSocket();
  const { alerts, seen, ends } = follow(socket);
  socket.fire("snapshot", { epoch: "e1", offset: "1-0", active: [] });
  socket.fire("alert", event("2-0", "open", "A", "10:10"));
  socket.fire("alert", event("3-0", "open", "B", "10:10"));
  socket.fire("alert", event("4-0", "close", "A", "10:10"));
  socket.drop();
  socket.connect();
  // This pod has seen up to 2-0 only; its feed then catches up.
  socket.fire("snapshot", { epoch: "e1", offset: "2-0", recovered: true, active: [window("A", "10:10")], missed: [] });
  assert.deepEqual(ends(), { B: "10:10" });
  socket.fire("alert", event("3-0", "open", "B", "10:10"));
  socket.fire("alert", event("4-0", "close", "A", "10:10"));
  socket.fire("alert", event("5-0", "update", "B", "10:20"));
  assert.deepEqual(seen, ["2-0", "3-0", "4-0", "5-0"]);
  assert.deepEqual(ends(), { B: "10:20" });
  assert.deepEqual(alerts.since, { epoch: "e1", offset: "5-0" });
});

test("recovered:false replaces the state with the snapshot", () => {
  const socket = new ScriptedSocket();
  const { seen, resyncs, ends } = follow(socket);
  socket.fire("snapshot", { epoch: "e1", offset: "1-0", active: [] });
  socket.fire("alert", event("2-0", "open", "A", "10:10"));
  socket.drop();
  socket.connect();
  socket.fire("snapshot", { epoch: "e2", offset: "1-0", recovered: false, active: [window("B", "10:50")], missed: [] });
  assert.deepEqual(ends(), { B: "10:50" });
  assert.deepEqual(resyncs, [{ epoch: "e2", offset: "1-0" }]);
  socket.fire("alert", event("1-1", "update", "B", "10:55", "e2")); // a new epoch's offsets
  assert.deepEqual(seen, ["2-0", "1-1"]);
  assert.deepEqual(ends(), { B: "10:55" });
});

test("an event from another epoch reconnects for a fresh snapshot", async () => {
  const socket = new ScriptedSocket();
  follow(socket);
  socket.fire("snapshot", { epoch: "e1", offset: "1-0", active: [] });
  socket.fire("alert", event("2-0", "open", "A", "10:10", "e2"));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(socket.handshakes.length, 2);
  assert.deepEqual(socket.handshakes[1].since, { epoch: "e1", offset: "1-0" });
});
