// alerts.js: alert-notify's client module, served at /client/alerts.js (an ES module,
// no build step). It keeps a stock socket.io-client socket correct across reconnects:
//
//   import { io } from "socket.io-client"; // 4.x, imported by the page itself
//   import { AlertStream } from "https://alerts.example/client/alerts.js";
//   const alerts = new AlertStream(io("https://alerts.example"), { locations: ["Haifa"] });
//   alerts.addEventListener("alert", (e) => notify(e.detail));    // open | update | close
//   alerts.addEventListener("windows", () => render(alerts.windows)); // location -> window
//   alerts.addEventListener("resync", () => {}); // state replaced: events may be skipped
//
// The algorithm (the README states it for mobile clients too):
// 1. Before each connect attempt the handshake `auth` carries the locations and `since`
//    ({epoch, offset} of the last event applied, or of the last snapshot).
// 2. Until a connection's `snapshot` arrives, its live `alert`s are held.
// 3. The snapshot's `active` replaces the windows: it is the truth at its `offset`
//    (except for a location whose last event applied is newer: a pod that lags behind).
//    With `recovered: true` its `missed` events (those after `since`) are announced in
//    offset order; otherwise the state was replaced with nothing to replay ("resync").
// 4. Then the held events, sorted, then live ones. An event is applied only when its
//    offset is after the snapshot's and after the newest one applied for its location:
//    repeats and stale events change nothing. Offsets are `<ms>-<seq>`, compared as
//    numbers, ms then seq.
// 5. An event from another epoch (the server's log was reset) reconnects, so that the
//    next snapshot says `recovered: false` and replaces the state.

// Compares two log offsets (`"<ms>-<seq>"`): negative, zero or positive.
export function compareOffsets(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

// `a` is after `b`; nothing is after a known offset's absence (null).
const after = (a, b) => b == null || compareOffsets(a, b) > 0;

// A window as the snapshot carries it, from an open or update event.
function windowOf(event) {
  const { windowId, location, startTime, endTime, sentTime, duration, types, alertCount,
    severity, title, instructions } = event;
  return { id: windowId, location, startTime, endTime, sentTime, duration, type: event.type,
    types, alertCount, severity, title, instructions };
}

export class AlertStream extends EventTarget {
  #socket;
  #locations;
  #epoch = null;
  #offset = null; // of the last event applied, or of the last snapshot
  #floor = null; // the last snapshot's offset: what it holds is not applied again
  #latest = new Map(); // location -> offset of its newest event applied
  #windows = new Map(); // location -> window
  #held = []; // live events of this connection before its snapshot; null once applied
  #retry = null;

  // `socket`: from the stock client's `io(url, options)`, not yet connected (pass it
  // at once, or create it with `autoConnect: false`). Its own `auth` (a token, say)
  // is kept and sent with ours.
  constructor(socket, { locations = [] } = {}) {
    super();
    this.#socket = socket;
    this.#locations = [...locations];
    const own = socket.auth;
    socket.auth = (send) => {
      const ours = { locations: this.#locations };
      if (this.#epoch != null && this.#offset != null) {
        ours.since = { epoch: this.#epoch, offset: this.#offset };
      }
      if (typeof own === "function") own((data) => send({ ...data, ...ours }));
      else send({ ...own, ...ours });
    };
    socket.on("connect", () => { this.#held = []; });
    socket.on("snapshot", (snapshot) => this.#onSnapshot(snapshot));
    socket.on("alert", (event) => this.#onAlert(event));
    socket.on("disconnect", (reason) => {
      this.#held = [];
      // The stock client leaves a server-side disconnect to the application.
      if (reason === "io server disconnect") this.#reconnect(1000 + Math.random() * 1000);
    });
    if (socket.connected) this.#reconnect(0); // its handshake went without `since`
    else if (!socket.active) socket.connect();
  }

  // The open windows, by location (read-only; a new Map after each snapshot).
  get windows() { return this.#windows; }

  // Where a resume starts: `{epoch, offset}`, or null before the first snapshot.
  get since() {
    return this.#epoch == null || this.#offset == null ? null : { epoch: this.#epoch, offset: this.#offset };
  }

  get socket() { return this.#socket; }

  // Follows other locations (none: every location), through a new handshake.
  setLocations(locations) {
    this.#locations = [...locations];
    if (locations.length) {
      const kept = new Set(locations);
      for (const location of [...this.#windows.keys(), ...this.#latest.keys()]) {
        if (!kept.has(location)) {
          this.#windows.delete(location);
          this.#latest.delete(location);
        }
      }
    }
    this.#reconnect(0);
  }

  close() {
    clearTimeout(this.#retry);
    this.#socket.disconnect();
  }

  #reconnect(delay) {
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.#socket.disconnect().connect(), delay);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #onSnapshot({ epoch = null, offset = null, active = [], missed, recovered }) {
    const since = this.#offset;
    const resumed = recovered === true && epoch === this.#epoch;
    const resync = this.#epoch != null && !resumed;
    if (!resumed) {
      this.#latest.clear();
      this.#offset = null;
    }
    // Per location the newer of the snapshot (the state at `offset`) and the last event
    // applied: a pod whose feed lags behind this page's must not take it back.
    const windows = new Map(active.map((window) => [window.location, window]));
    for (const [location, at] of this.#latest) {
      if (!after(at, offset)) this.#latest.delete(location);
      else if (this.#windows.has(location)) windows.set(location, this.#windows.get(location));
      else windows.delete(location);
    }
    this.#windows = windows;
    this.#epoch = epoch;
    this.#floor = offset;
    if (offset != null && after(offset, this.#offset)) this.#offset = offset;
    this.#emit("windows", this.#windows);
    if (resync) this.#emit("resync", { epoch, offset });
    if (resumed) {
      const replay = (missed || []).filter((e) => e.epoch === epoch && after(e.offset, since));
      replay.sort((a, b) => compareOffsets(a.offset, b.offset));
      let last = since;
      for (const event of replay) {
        if (!after(event.offset, last)) continue; // a repeat in the replay
        last = event.offset;
        this.#emit("alert", event);
      }
    }
    const held = this.#held || [];
    this.#held = null;
    held.sort((a, b) => compareOffsets(a.offset, b.offset));
    for (const event of held) this.#apply(event);
  }

  #onAlert(event) {
    if (this.#held) this.#held.push(event);
    else this.#apply(event);
  }

  #apply(event) {
    if (this.#epoch == null) this.#epoch = event.epoch; // the log was empty at the snapshot
    if (event.epoch !== this.#epoch) {
      this.#reconnect(0);
      return;
    }
    if (!after(event.offset, this.#floor) || !after(event.offset, this.#latest.get(event.location))) {
      return; // in the snapshot already, a repeat, or older than what this location shows
    }
    this.#latest.set(event.location, event.offset);
    if (after(event.offset, this.#offset)) this.#offset = event.offset;
    if (event.eventType === "close") this.#windows.delete(event.location);
    else this.#windows.set(event.location, windowOf(event));
    this.#emit("alert", event);
    this.#emit("windows", this.#windows);
  }
}
