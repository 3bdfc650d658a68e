// The chat screen's model: one Mkondo client, its events on the main actor, and
// the two lifecycle hooks (app state, network path) the SDK needs on iOS.
import Foundation
import Mkondo
import Network
import SwiftUI

/// Your backend mints user tokens (POST /token with the user's session);
/// called on a background thread, so a blocking request is fine.
final class BackendTokens: TokenProvider, @unchecked Sendable {
    let endpoint: URL
    init(endpoint: URL) { self.endpoint = endpoint }

    func fetchToken() throws -> String {
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        var result: Result<String, TokenError> = .failure(.Failed(detail: "no answer"))
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            defer { done.signal() }
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            if status == 401 || status == 403 {
                result = .failure(.Unauthorized(detail: "backend refused"))
            } else if let data, status == 200, let token = String(data: data, encoding: .utf8) {
                result = .success(token)
            } else {
                result = .failure(.Failed(detail: error?.localizedDescription ?? "HTTP \(status)"))
            }
        }.resume()
        done.wait()
        return try result.get()
    }
}

/// Receives events on the SDK's thread and hands them to the model on the main actor.
final class Listener: EventListener, @unchecked Sendable {
    weak var model: ChatModel?
    func onEvent(event: ClientEvent) {
        Task { @MainActor [weak model] in model?.apply(event) }
    }
}

@MainActor
final class ChatModel: ObservableObject {
    @Published var messages: [Message] = []
    @Published var typing: [String] = []
    @Published var state: ConnectionState = .disconnected
    @Published var draft = ""

    let conversationId: String
    private let client: Client
    private var subscription: Subscription?
    private let pathMonitor = NWPathMonitor()

    init(serverURL: String, tokenEndpoint: URL, conversationId: String) throws {
        self.conversationId = conversationId
        let listener = Listener()
        // gRPC is the default transport on mobile.
        client = try Client(
            config: ClientConfig(url: serverURL),
            listener: listener,
            tokenProvider: BackendTokens(endpoint: tokenEndpoint)
        )
        listener.model = self
        pathMonitor.pathUpdateHandler = { [client] path in
            client.setNetworkAvailable(available: path.status == .satisfied)
        }
        pathMonitor.start(queue: DispatchQueue(label: "mkondo.path"))
        client.connect()
        Task { await self.start() }
    }

    private func start() async {
        do {
            subscription = try await client.subscribe(conversationId: conversationId)
            messages = try await client.history(
                conversationId: conversationId, before: nil, after: nil, limit: 50
            ).messages
        } catch {
            print("mkondo: \(error)")
        }
    }

    /// Wired to `scenePhase`: background shows the user `away`, foreground retries at once.
    func scenePhaseChanged(_ phase: ScenePhase) {
        client.setAppState(state: phase == .active ? .foreground : .background)
    }

    func apply(_ event: ClientEvent) {
        switch event {
        case let .stateChanged(_, new, _, _):
            state = new
        case let .messageReceived(message) where message.conversationId == conversationId:
            messages.append(message)
        case let .messageUpdated(message, _):
            if let i = messages.firstIndex(where: { $0.seq == message.seq }) { messages[i] = message }
        case let .typing(conversation, _, _) where conversation == conversationId:
            typing = client.typingUsers(conversationId: conversationId)
        default:
            break
        }
    }

    func draftChanged() {
        let stopped = draft.isEmpty
        Task {
            // At most one `typing` per 3 s leaves, so every keystroke may call it.
            if stopped {
                try? await client.typingStopped(conversationId: conversationId)
            } else {
                try? await client.typing(conversationId: conversationId)
            }
        }
    }

    func send() {
        let text = draft
        draft = ""
        // Queued while offline; the message arrives through the listener.
        Task { _ = try? await client.sendText(conversationId: conversationId, text: text) }
    }

    deinit {
        pathMonitor.cancel()
        client.shutdown()
    }
}
