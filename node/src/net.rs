//! libp2p networking of a node (DESIGN §5): TCP + Noise + Yamux; gossipsub topics
//! `govchain/<chain_id>/tx` and `govchain/<chain_id>/consensus`; request-response
//! `/govchain/sync/1` for committed blocks with their certificates; identify.
//!
//! Peer admission: only peers whose ids derive from a genesis validator key (or a configured
//! observer key) may connect; every other connection is denied by the allow list before any
//! application message is read. Every message size is capped before it is decoded. The swarm
//! runs in its own task; the node talks to it through bounded channels ([`NetHandle`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use govchain_ledger::{codec, ChainId, Height, PublicKey, Store, MAX_BLOCK_BYTES};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, identify, identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Largest gossip message (a proposal carries its block).
pub const MAX_GOSSIP_BYTES: usize = MAX_BLOCK_BYTES + 1024 * 1024;
/// Most blocks per sync response.
pub const MAX_SYNC_BLOCKS: u64 = 64;
/// Largest sync response.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Largest sync request.
pub const MAX_SYNC_REQUEST_BYTES: usize = 64;
/// Capacity of the channels between the swarm task and the node.
pub const NET_QUEUE: usize = 8192;
/// Penalty points after which a peer is disconnected (it may reconnect and start over).
pub const MAX_PENALTY: u32 = 100;
const SYNC_PROTOCOL: &str = "/govchain/sync/1";

/// The libp2p identity of a node key (same ed25519 secret).
pub fn identity_from_seed(seed: [u8; 32]) -> anyhow::Result<identity::Keypair> {
    Ok(identity::Keypair::ed25519_from_bytes(seed)?)
}

/// The peer id of a validator key.
pub fn peer_id(key: &PublicKey) -> anyhow::Result<PeerId> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())?;
    Ok(PeerId::from_public_key(&identity::PublicKey::from(pk)))
}

/// A request for committed blocks `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// First height.
    pub from: Height,
    /// Last height (inclusive); the server caps the range at [`MAX_SYNC_BLOCKS`].
    pub to: Height,
}

/// Committed blocks with their certificates, as stored bytes (the receiver decodes with caps).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// (block bytes, certificate bytes), ascending heights.
    pub blocks: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
}

/// Length-prefixed canonical encoding for the sync protocol, with size caps.
#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

async fn read_capped<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    io.read_exact(&mut len).await?;
    let len = u64::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message of {len} bytes over {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_framed<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> std::io::Result<()> {
    io.write_all(&(bytes.len() as u64).to_le_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncRequest> {
        let b = read_capped(io, MAX_SYNC_REQUEST_BYTES).await?;
        codec::decode(&b, MAX_SYNC_REQUEST_BYTES).map_err(invalid)
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<SyncResponse> {
        let b = read_capped(io, MAX_SYNC_RESPONSE_BYTES).await?;
        codec::decode(&b, MAX_SYNC_RESPONSE_BYTES).map_err(invalid)
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> std::io::Result<()> {
        write_framed(io, &codec::encode(&req).map_err(invalid)?).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> std::io::Result<()> {
        write_framed(io, &codec::encode(&res).map_err(invalid)?).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    gossip: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    identify: identify::Behaviour,
}

/// The two gossip topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Transactions (batches).
    Tx,
    /// Proposals and votes.
    Consensus,
}

/// What the network delivers to the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message; the node must answer with [`NetCommand::Validate`].
    Gossip {
        /// Topic.
        topic: Topic,
        /// The peer that forwarded it.
        from: PeerId,
        /// Gossip message id.
        id: MessageId,
        /// Payload.
        data: Vec<u8>,
    },
    /// A peer connected.
    Connected(PeerId),
    /// A peer subscribed to the consensus topic (it can now receive our messages).
    Subscribed(PeerId),
}

/// The node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Not useful (old, duplicate): drop it, no penalty.
    Ignore,
    /// Invalid: drop it and penalise the sender.
    Reject,
}

/// What the node asks of the network.
#[derive(Debug)]
pub enum NetCommand {
    /// Publish on a topic.
    Publish(Topic, Vec<u8>),
    /// Accept (forward), ignore (drop) or reject (drop and penalise the sender) a received
    /// gossip message.
    Validate {
        /// Message id.
        id: MessageId,
        /// Who sent it.
        from: PeerId,
        /// The verdict.
        verdict: Verdict,
    },
    /// Allow a key to connect (a validator that joined by an on-chain change).
    Allow(PublicKey),
    /// Penalise a peer for bad input outside gossip validation.
    Penalize(PeerId, u32),
    /// Fetch committed blocks from some connected peer.
    Sync(
        SyncRequest,
        oneshot::Sender<anyhow::Result<(PeerId, SyncResponse)>>,
    ),
}

/// The node's side of the network task.
pub struct NetHandle {
    /// Commands to the swarm.
    pub commands: mpsc::Sender<NetCommand>,
    /// Events from the swarm.
    pub events: mpsc::Receiver<NetEvent>,
    /// This node's peer id.
    pub local: PeerId,
}

/// Network settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The chain (topic names).
    pub chain_id: ChainId,
    /// The node's secret seed (its libp2p identity).
    pub seed: [u8; 32],
    /// Listen address.
    pub listen: Multiaddr,
    /// Peers to dial (and redial).
    pub peers: Vec<Multiaddr>,
    /// Keys allowed to connect: validators of genesis and configured observers.
    pub allowed: Vec<PublicKey>,
    /// Largest gossip message sent or received ([`MAX_GOSSIP_BYTES`] on every node; tests
    /// raise it to send an oversize message, which receivers drop in the codec).
    pub max_message_bytes: usize,
}

fn topic(chain: &ChainId, t: Topic) -> IdentTopic {
    match t {
        Topic::Tx => IdentTopic::new(format!("govchain/{chain}/tx")),
        Topic::Consensus => IdentTopic::new(format!("govchain/{chain}/consensus")),
    }
}

/// Starts the swarm task.
pub fn spawn(cfg: NetConfig, store: Store) -> anyhow::Result<NetHandle> {
    let id = identity_from_seed(cfg.seed)?;
    let local = id.public().to_peer_id();
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .max_transmit_size(cfg.max_message_bytes)
        // Every payload is signed at the application level (transactions, proposals, votes)
        // and every connection is authenticated by Noise to an admitted key, so gossip-level
        // signatures would only sign and hash each (megabyte-sized) message again: messages
        // carry no author, sequence number or signature, and any that do are refused.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        .mesh_n_low(2)
        .mesh_outbound_min(1)
        .message_id_fn(|m: &gossipsub::Message| {
            MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(id)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let gossip =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_cfg)
                    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let identify =
                identify::Behaviour::new(identify::Config::new("/govchain/1".into(), key.public()));
            Ok(Behaviour {
                allow: Default::default(),
                gossip,
                sync,
                identify,
            })
        })
        .map_err(|e| anyhow::anyhow!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for k in &cfg.allowed {
        let p = peer_id(k)?;
        if p != local {
            swarm.behaviour_mut().allow.allow_peer(p);
        }
    }
    for t in [Topic::Tx, Topic::Consensus] {
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&topic(&cfg.chain_id, t))?;
    }
    swarm
        .listen_on(cfg.listen.clone())
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let (cmd_tx, cmd_rx) = mpsc::channel(NET_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(NET_QUEUE);
    let task = SwarmTask {
        swarm,
        chain: cfg.chain_id.clone(),
        peers: cfg.peers.clone(),
        store,
        events: ev_tx,
        pending: HashMap::new(),
        penalties: HashMap::new(),
        connected: HashSet::new(),
        sync_turn: 0,
    };
    tokio::spawn(task.run(cmd_rx));
    Ok(NetHandle {
        commands: cmd_tx,
        events: ev_rx,
        local,
    })
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    chain: ChainId,
    peers: Vec<Multiaddr>,
    store: Store,
    events: mpsc::Sender<NetEvent>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<anyhow::Result<(PeerId, SyncResponse)>>>,
    penalties: HashMap<PeerId, u32>,
    connected: HashSet<PeerId>,
    /// Sync requests go to the connected peers in turn, so one peer that answers badly or not
    /// at all cannot keep a node behind.
    sync_turn: usize,
}

impl SwarmTask {
    async fn run(mut self, mut commands: mpsc::Receiver<NetCommand>) {
        let mut redial = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(c) => self.command(c),
                    None => break,
                },
                ev = self.swarm.select_next_some() => self.event(ev).await,
                _ = redial.tick() => self.redial(),
            }
        }
    }

    fn redial(&mut self) {
        if self.connected.len() >= self.peers.len() {
            return;
        }
        for a in self.peers.clone() {
            if let Err(e) = self.swarm.dial(a.clone()) {
                tracing::debug!(target: "node.net", addr = %a, error = %e, "dial failed");
            }
        }
    }

    fn command(&mut self, c: NetCommand) {
        match c {
            NetCommand::Publish(t, data) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(topic(&self.chain, t), data)
                {
                    tracing::debug!(target: "node.net", error = %e, "publish");
                }
            }
            NetCommand::Validate { id, from, verdict } => {
                let acc = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                    Verdict::Reject => MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&id, &from, acc);
                if verdict == Verdict::Reject {
                    self.penalize(from, 10);
                }
            }
            NetCommand::Allow(key) => match peer_id(&key) {
                Ok(p) => {
                    self.swarm.behaviour_mut().allow.allow_peer(p);
                }
                Err(e) => tracing::warn!(target: "node.net", error = %e, "cannot allow key"),
            },
            NetCommand::Penalize(p, points) => self.penalize(p, points),
            NetCommand::Sync(req, reply) => {
                if self.connected.is_empty() {
                    let _ = reply.send(Err(anyhow::anyhow!("no connected peer to sync from")));
                    return;
                }
                self.sync_turn = self.sync_turn.wrapping_add(1);
                let mut peers: Vec<PeerId> = self.connected.iter().copied().collect();
                peers.sort();
                let peer = peers[self.sync_turn % peers.len()];
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, req);
                self.pending.insert(id, reply);
            }
        }
    }

    fn penalize(&mut self, peer: PeerId, points: u32) {
        let p = self.penalties.entry(peer).or_default();
        *p += points;
        tracing::warn!(target: "node.net", %peer, score = *p, "peer penalised");
        if *p >= MAX_PENALTY {
            self.penalties.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn serve_sync(&self, req: SyncRequest) -> SyncResponse {
        let mut out = SyncResponse::default();
        let to = req.to.0.min(req.from.0.saturating_add(MAX_SYNC_BLOCKS - 1));
        let mut bytes = 0usize;
        for h in req.from.0..=to {
            let (Ok(Some(b)), Ok(Some(c))) = (
                self.store.block_bytes(Height(h)),
                self.store.commit_bytes(Height(h)),
            ) else {
                break;
            };
            bytes += b.len() + c.len();
            if bytes > MAX_SYNC_RESPONSE_BYTES / 2 && !out.blocks.is_empty() {
                break;
            }
            out.blocks
                .push((serde_bytes::ByteBuf::from(b), serde_bytes::ByteBuf::from(c)));
        }
        out
    }

    async fn emit(&mut self, e: NetEvent) {
        if self.events.send(e).await.is_err() {
            tracing::debug!(target: "node.net", "node stopped listening");
        }
    }

    async fn event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(target: "node.net", %address, "p2p listening");
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.connected.insert(peer_id) => {
                tracing::info!(target: "node.net", peer = %peer_id, "peer connected");
                self.emit(NetEvent::Connected(peer_id)).await;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
                tracing::info!(target: "node.net", peer = %peer_id, "peer disconnected");
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::debug!(target: "node.net", addr = %send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let t = if message.topic == topic(&self.chain, Topic::Tx).hash() {
                    Topic::Tx
                } else if message.topic == topic(&self.chain, Topic::Consensus).hash() {
                    Topic::Consensus
                } else {
                    self.swarm
                        .behaviour_mut()
                        .gossip
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                    return;
                };
                self.emit(NetEvent::Gossip {
                    topic: t,
                    from: propagation_source,
                    id: message_id,
                    data: message.data,
                })
                .await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Subscribed {
                peer_id,
                topic: t,
            })) if t == topic(&self.chain, Topic::Consensus).hash() => {
                self.emit(NetEvent::Subscribed(peer_id)).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let resp = tokio::task::block_in_place(|| self.serve_sync(request));
                    if self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, resp)
                        .is_err()
                    {
                        tracing::debug!(target: "node.net", %peer, "sync response not sent");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(r) = self.pending.remove(&request_id) {
                        let _ = r.send(Ok((peer, response)));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    peer,
                    ..
                },
            )) => {
                if let Some(r) = self.pending.remove(&request_id) {
                    let _ = r.send(Err(anyhow::anyhow!("sync from {peer} failed: {error}")));
                }
            }
            _ => {}
        }
    }
}
