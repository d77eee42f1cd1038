// Stock socket.io-client that subscribes to <location>, then floods `subscribe`
// (<count> calls at once, each with an ack) and prints what the acks said:
//   {"step":"flooded","ok":n,"errors":n,"error":"<first error>"}
// then the first `alert` it receives: {"step":"alert","event":...}.
// Usage: node subscribe-flood.js <url> <location> <count>
const { io } = require("socket.io-client");

const [url, location, count] = process.argv.slice(2);
const socket = io(url, { transports: ["websocket"], reconnection: false });
setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 30000);

socket.on("connect_error", (err) => {
  console.error("connect_error", err.message);
  process.exit(3);
});
socket.once("snapshot", async () => {
  const calls = Array.from({ length: Number(count) }, () =>
    socket.timeout(10000).emitWithAck("subscribe", { locations: [location] }),
  );
  const acks = await Promise.all(calls);
  const errors = acks.filter((ack) => ack.error);
  console.log(
    JSON.stringify({ step: "flooded", ok: acks.length - errors.length, errors: errors.length, error: errors[0]?.error }),
  );
});
socket.on("alert", (event) => {
  console.log(JSON.stringify({ step: "alert", event }));
  socket.disconnect();
  process.exit(0);
});
