import ChorusConfig
import ChorusJSON
import ChorusLoop
import ChorusModel
import ChorusProtocol
import ChorusStore
import Logging

/// What a connected peer may do, from its credentials and the `[[access]]` rules.
struct AccessRights: Equatable {
    var read: Bool
    var send: Bool
    var admin: Bool
    var instances: Set<String>   // "*" = all

    static let full = AccessRights(read: true, send: true, admin: true, instances: ["*"])
    static let none = AccessRights(read: false, send: false, admin: false, instances: [])

    func mayUse(instance: String) -> Bool { instances.contains("*") || instances.contains(instance) }

    /// The daemon's own uid and root get everything; others the union of the rules matching their uid or gid.
    static func resolve(peer: PeerCredentials?, rules: [AccessRule], daemonUid: UInt32,
                        resolveUser: (String) -> UInt32?, resolveGroup: (String) -> UInt32?,
                        supplementaryGroups: (UInt32) -> [UInt32]) -> AccessRights
    {
        guard let peer else { return .none }
        if peer.uid == 0 || peer.uid == daemonUid { return .full }
        var r = AccessRights.none
        let groups = Set([peer.gid] + supplementaryGroups(peer.uid))
        for rule in rules {
            var match = false
            if let u = rule.uid, u == peer.uid { match = true }
            if let n = rule.user, let u = resolveUser(n), u == peer.uid { match = true }
            if let g = rule.gid, groups.contains(g) { match = true }
            if let n = rule.group, let g = resolveGroup(n), groups.contains(g) { match = true }
            guard match else { continue }
            r.read = r.read || rule.read
            r.send = r.send || rule.send
            r.admin = r.admin || rule.admin
            r.instances.formUnion(rule.instances)
        }
        return r
    }
}

/// One consumer connection on the Unix socket.
final class ConsumerSession {
    let connection: StreamConnection
    let rights: AccessRights
    unowned let daemon: Daemon
    private var framer: LineFramer
    private(set) var subscriptionNames: Set<String> = []
    let clientIdentity: String

    init(connection: StreamConnection, rights: AccessRights, daemon: Daemon, maxFrameBytes: Int) {
        self.connection = connection
        self.rights = rights
        self.daemon = daemon
        self.framer = LineFramer(maxFrameBytes: maxFrameBytes)
        self.clientIdentity = connection.peer.map { "uid:\($0.uid)" } ?? "unknown"
    }

    var isClosed: Bool { connection.isClosed }
    var pendingWriteBytes: Int { connection.pendingWriteBytes }
    func write(_ bytes: [UInt8]) { connection.write(bytes) }

    func start() {
        connection.onRead = { [weak self] bytes in self?.received(bytes) }
        connection.onDrain = { [weak self] in
            guard let self else { return }
            self.daemon.hub.drained(self)
        }
        connection.onClose = { [weak self] _ in
            guard let self else { return }
            self.daemon.sessionClosed(self)
        }
    }

    func dropSubscriptions() {
        for n in subscriptionNames { daemon.hub.remove(n) }
        subscriptionNames.removeAll()
    }

    private func received(_ bytes: [UInt8]) {
        framer.append(bytes)
        while let out = framer.next() {
            switch out {
            case .oversized(let n):
                write(ServerFrame.error(ProtocolError(
                    code: .frameTooLarge,
                    message: "frame of \(n)+ bytes exceeds max_frame_bytes \(framer.maxFrameBytes); it was discarded")))
            case .frame(let line):
                do {
                    let frame = try ClientFrame.parse(line)
                    handle(frame)
                } catch {
                    write(ServerFrame.error(error))
                }
            }
            if connection.isClosed { return }
        }
    }

    private func fail(_ id: JSONValue?, _ code: ErrorCode, _ message: String, field: String? = nil) {
        write(ServerFrame.error(ProtocolError(code: code, message: message, field: field, id: id)))
    }

    private func handle(_ frame: ClientFrame) {
        let id = frame.id
        switch frame.command {
        case .hello(let version, _):
            if version != protocolVersion {
                fail(id, .unsupported, "protocol version \(version) is not supported; this chorusd speaks \(protocolVersion)")
            } else {
                write(ServerFrame.ok(id: id))
            }
        case .ping:
            write(ServerFrame.pong(id: id))
        case .subscribe(let name, let filter, let from):
            guard rights.read else { return fail(id, .forbidden, "this connection may not read events") }
            daemon.subscribe(session: self, id: id, name: name, filter: filter, from: from)
        case .unsubscribe(let sub):
            guard subscriptionNames.contains(sub) else { return fail(id, .notFound, "no subscription \"\(sub)\" on this connection", field: "sub") }
            subscriptionNames.remove(sub)
            daemon.hub.remove(sub)
            write(ServerFrame.ok(id: id))
        case .ack(let sub, let cursor):
            daemon.ack(session: self, id: id, sub: sub, cursor: cursor)
        case .send(let key, let message):
            guard rights.send else { return fail(id, .forbidden, "this connection may not send messages") }
            daemon.send(session: self, id: id, idempotencyKey: key, message: message)
        case .replay(let filter, let fromCursor, let toCursor, let fromTime, let toTime, let limit):
            guard rights.read else { return fail(id, .forbidden, "this connection may not read events") }
            daemon.replay(session: self, id: id, filter: filter, fromCursor: fromCursor, toCursor: toCursor,
                          fromTimeMs: fromTime, toTimeMs: toTime, limit: limit)
        case .plugins:
            guard rights.read else { return fail(id, .forbidden, "this connection may not read") }
            write(ServerFrame.reply(type: "plugins", id: id, fields: ["plugins": .array(daemon.pluginsJSON())]))
        case .instances:
            guard rights.read else { return fail(id, .forbidden, "this connection may not read") }
            write(ServerFrame.reply(type: "instances", id: id, fields: ["instances": .array(daemon.instancesJSON())]))
        case .stats:
            guard rights.read else { return fail(id, .forbidden, "this connection may not read") }
            daemon.stats(session: self, id: id)
        case .subscriptions:
            guard rights.read else { return fail(id, .forbidden, "this connection may not read") }
            daemon.listSubscriptions(session: self, id: id)
        case .resetSubscription(let name, let to):
            guard rights.admin else { return fail(id, .forbidden, "resetting a subscription needs admin access") }
            daemon.resetSubscription(session: self, id: id, name: name, to: to)
        case .deleteSubscription(let name):
            guard rights.admin else { return fail(id, .forbidden, "deleting a subscription needs admin access") }
            daemon.deleteSubscription(session: self, id: id, name: name)
        }
    }

    func addSubscription(_ name: String) { subscriptionNames.insert(name) }
}
