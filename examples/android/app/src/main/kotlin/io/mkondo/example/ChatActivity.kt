// A one-conversation chat screen on Mkondo: the client in a ViewModel, events
// into Compose state, and the two lifecycle hooks Android needs (process
// foreground/background, network availability).
package io.mkondo.example

import android.app.Application
import android.net.ConnectivityManager
import android.net.Network
import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.layout.*
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.*
import androidx.compose.runtime.*
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.DefaultLifecycleObserver
import androidx.lifecycle.LifecycleOwner
import androidx.lifecycle.ProcessLifecycleOwner
import androidx.lifecycle.viewModelScope
import androidx.lifecycle.viewmodel.compose.viewModel
import io.mkondo.sdk.*
import java.net.HttpURLConnection
import java.net.URL
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

const val SERVER_URL = "http://10.0.2.2:8080" // the host machine, from the emulator
const val TOKEN_URL = "http://10.0.2.2:3000/token" // your backend mints user tokens
const val CONVERSATION = "launch-team"

/** Asks the app's backend for a token; called on an SDK background thread. */
class BackendTokens : TokenProvider {
    override fun fetchToken(): String {
        val conn = URL(TOKEN_URL).openConnection() as HttpURLConnection
        conn.requestMethod = "POST"
        try {
            return when (val status = conn.responseCode) {
                200 -> conn.inputStream.bufferedReader().readText().trim()
                401, 403 -> throw TokenException.Unauthorized("backend refused")
                else -> throw TokenException.Failed("HTTP $status")
            }
        } catch (e: java.io.IOException) {
            throw TokenException.Failed(e.toString())
        } finally {
            conn.disconnect()
        }
    }
}

class ChatViewModel(app: Application) : AndroidViewModel(app), EventListener {
    val messages = mutableStateListOf<Message>()
    var typing by mutableStateOf(emptyList<String>())
    var state by mutableStateOf(ConnectionState.DISCONNECTED)

    // gRPC is the default transport on mobile.
    private val client = Client(ClientConfig(url = SERVER_URL), this, BackendTokens())
    private var subscription: Subscription? = null

    private val appState = object : DefaultLifecycleObserver {
        override fun onStart(owner: LifecycleOwner) = client.setAppState(AppState.FOREGROUND)
        override fun onStop(owner: LifecycleOwner) = client.setAppState(AppState.BACKGROUND)
    }

    private val connectivity = app.getSystemService(ConnectivityManager::class.java)
    private val network = object : ConnectivityManager.NetworkCallback() {
        override fun onAvailable(network: Network) = client.setNetworkAvailable(true)
        override fun onLost(network: Network) = client.setNetworkAvailable(false)
    }

    init {
        ProcessLifecycleOwner.get().lifecycle.addObserver(appState)
        connectivity.registerDefaultNetworkCallback(network)
        client.connect()
        viewModelScope.launch {
            runCatching {
                subscription = client.subscribe(CONVERSATION)
                messages.addAll(client.history(CONVERSATION, null, null, 50u).messages)
            }
        }
    }

    /** Runs on an SDK thread: hop to the main thread before touching state. */
    override fun onEvent(event: ClientEvent) {
        viewModelScope.launch(Dispatchers.Main) {
            when (event) {
                is ClientEvent.StateChanged -> state = event.new
                is ClientEvent.MessageReceived ->
                    if (event.message.conversationId == CONVERSATION) messages.add(event.message)
                is ClientEvent.MessageUpdated -> {
                    val i = messages.indexOfFirst { it.seq == event.message.seq }
                    if (i >= 0) messages[i] = event.message
                }
                is ClientEvent.Typing ->
                    if (event.conversationId == CONVERSATION) typing = client.typingUsers(CONVERSATION)
                else -> {}
            }
        }
    }

    fun draftChanged(draft: String) = viewModelScope.launch {
        // At most one `typing` per 3 s leaves, so every keystroke may call it.
        runCatching { if (draft.isEmpty()) client.typingStopped(CONVERSATION) else client.typing(CONVERSATION) }
    }

    // Queued while offline; the message arrives through onEvent.
    fun send(text: String) = viewModelScope.launch { runCatching { client.sendText(CONVERSATION, text) } }

    override fun onCleared() {
        ProcessLifecycleOwner.get().lifecycle.removeObserver(appState)
        connectivity.unregisterNetworkCallback(network)
        subscription?.cancel()
        client.shutdown()
    }
}

class ChatActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { ChatScreen() } }
    }
}

@Composable
fun ChatScreen(model: ChatViewModel = viewModel()) {
    var draft by remember { mutableStateOf("") }
    Column(Modifier.fillMaxSize()) {
        if (model.state != ConnectionState.CONNECTED) {
            Text(if (model.state == ConnectionState.CONNECTING) "Connecting…" else "Offline",
                Modifier.fillMaxWidth().padding(4.dp))
        }
        LazyColumn(Modifier.weight(1f).padding(8.dp)) {
            items(model.messages, key = { it.seq.toLong() }) { m ->
                Column(Modifier.padding(vertical = 4.dp)) {
                    Text(m.senderId, style = MaterialTheme.typography.labelSmall)
                    Text(if (m.deletedAtMs == null) m.text else "message deleted")
                }
            }
        }
        if (model.typing.isNotEmpty()) Text("${model.typing.joinToString()} typing…", Modifier.padding(8.dp))
        Row(Modifier.padding(8.dp)) {
            OutlinedTextField(draft, { draft = it; model.draftChanged(it) }, Modifier.weight(1f))
            Button({ model.send(draft); draft = "" }, enabled = draft.isNotEmpty()) { Text("Send") }
        }
    }
}
