// Preloaded into server-everything with `node --import`. It calls `app.listen(PORT)` with no host,
// so Node binds every interface, and it offers no HOST setting (see its dist/transports/*.js).
// Here every TCP listen() that names no host gets 127.0.0.1, keeping the test peer off the network.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const [first, second] = args;
  const isPort = typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first));
  if (isPort && typeof second !== "string") args.splice(1, 0, "127.0.0.1");
  else if (typeof first === "object" && first?.port !== undefined && !first.host) {
    args[0] = { ...first, host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
