//! Network parameters: every consensus constant in one type, one value per network.
//!
//! | parameter                 | devnet                | regtest              |
//! |---------------------------|-----------------------|----------------------|
//! | proof of work             | real, ASERT retarget  | trivial, fixed bits  |
//! | target block time         | 3 s                   | 3 s (not enforced)   |
//! | ASERT half-life           | 60 s (20 blocks)      | none                 |
//! | coinbase maturity         | 10 blocks             | 1 block              |
//! | subsidy, halving interval | 50 coins, 210,000     | 50 coins, 150        |
//!
//! `docs/CONSENSUS.md` gives the reason for each value.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::amount::Amount;
use crate::block::{Block, Header};
use crate::difficulty::AsertSchedule;
use crate::hash::BlockHash;
use crate::merkle::compute_merkle_root;
use crate::target::{CompactTarget, Target};
use crate::transaction::{BlockHeight, Transaction};

/// Which network a node is on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Network {
    /// The default: real proof of work with ASERT difficulty, 3-second blocks.
    #[default]
    Devnet,
    /// Trivial proof of work and no retargeting, for tests and instant demos.
    Regtest,
}

impl Network {
    /// Every network.
    pub const ALL: [Network; 2] = [Network::Devnet, Network::Regtest];

    /// The network's name as written on the command line and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Devnet => "devnet",
            Network::Regtest => "regtest",
        }
    }

    /// The bech32m human-readable prefix of its addresses.
    pub const fn address_prefix(self) -> &'static str {
        match self {
            Network::Devnet => "pow",
            Network::Regtest => "powrt",
        }
    }

    /// A one-byte identifier, used in the peer handshake.
    pub const fn magic(self) -> u8 {
        match self {
            Network::Devnet => 0xd1,
            Network::Regtest => 0x7e,
        }
    }

    /// The network's parameters.
    pub fn params(self) -> &'static Params {
        static DEVNET: OnceLock<Params> = OnceLock::new();
        static REGTEST: OnceLock<Params> = OnceLock::new();
        match self {
            Network::Devnet => DEVNET.get_or_init(|| Params::build(Network::Devnet)),
            Network::Regtest => REGTEST.get_or_init(|| Params::build(Network::Regtest)),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        Network::ALL
            .into_iter()
            .find(|network| network.name() == text)
            .ok_or_else(|| format!("unknown network {text:?}: expected devnet or regtest"))
    }
}

/// How a network sets each block's `bits`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Retarget {
    /// Every block uses the proof-of-work limit.
    None,
    /// aserti3-2d anchored at block [`Params::ASERT_ANCHOR_HEIGHT`], in milliseconds.
    Asert(AsertSchedule),
}

/// Every consensus parameter of a network.
#[derive(Clone, Debug)]
pub struct Params {
    /// The network these parameters belong to.
    pub network: Network,
    /// The easiest target any block may have.
    pub pow_limit: CompactTarget,
    /// The genesis block's bits, also required of block 1 (the ASERT anchor).
    pub genesis_bits: CompactTarget,
    /// How `bits` follow from the chain.
    pub retarget: Retarget,
    /// The block interval the network aims for.
    pub target_block_time_ms: u64,
    /// How far past the validating node's clock a block's time may lie.
    pub max_future_block_time_ms: u64,
    /// Blocks a coinbase output must wait: created at height h, spendable in a block at
    /// height h + maturity or later.
    pub coinbase_maturity: u64,
    /// The subsidy of the first blocks.
    pub initial_subsidy: Amount,
    /// Blocks between halvings of the subsidy.
    pub halving_interval: u64,
    /// The largest encoded block.
    pub max_block_bytes: usize,
    /// The longest coinbase `data` note.
    pub max_coinbase_data_bytes: usize,
    genesis: Block,
    genesis_hash: BlockHash,
}

/// The devnet and regtest genesis time: 2026-11-25T00:00:00Z.
const GENESIS_TIME_MS: u64 = 1_795_564_800_000;

impl Params {
    /// The height of the ASERT anchor block. Block 1, not genesis: genesis has a fixed
    /// time in the past, and anchoring there would make every new devnet start years
    /// behind schedule. Block 1 is mined when a network really starts.
    pub const ASERT_ANCHOR_HEIGHT: BlockHeight = BlockHeight(1);

    fn build(network: Network) -> Params {
        let (pow_limit, genesis_bits, retarget, maturity, halving, nonce, note) = match network {
            Network::Devnet => (
                CompactTarget(0x1f00ffff),
                CompactTarget(0x1e0fffff),
                Retarget::Asert(AsertSchedule {
                    ideal_block_time: 3_000,
                    half_life: 60_000,
                }),
                10,
                210_000,
                DEVNET_GENESIS_NONCE,
                "powchain devnet genesis 2026-11-25: proof of work, done properly",
            ),
            Network::Regtest => (
                CompactTarget(0x207fffff),
                CompactTarget(0x207fffff),
                Retarget::None,
                1,
                150,
                REGTEST_GENESIS_NONCE,
                "powchain regtest genesis",
            ),
        };
        let genesis = genesis_block(genesis_bits, nonce, note);
        let genesis_hash = genesis.compute_hash();
        Params {
            network,
            pow_limit,
            genesis_bits,
            retarget,
            target_block_time_ms: 3_000,
            max_future_block_time_ms: 15_000,
            coinbase_maturity: maturity,
            initial_subsidy: Amount::from_coins(50).expect("50 coins is in range"),
            halving_interval: halving,
            max_block_bytes: 2_000_000,
            max_coinbase_data_bytes: 100,
            genesis,
            genesis_hash,
        }
    }

    /// The genesis block.
    pub fn genesis(&self) -> &Block {
        &self.genesis
    }

    /// The genesis block's hash.
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_hash
    }

    /// The proof-of-work limit as a target.
    pub fn pow_limit_target(&self) -> Target {
        self.pow_limit
            .to_target()
            .expect("network pow limits are valid compact targets")
    }

    /// The new coins a block at `height` may create.
    pub fn subsidy(&self, height: BlockHeight) -> Amount {
        let halvings = height.0 / self.halving_interval.max(1);
        if halvings >= 64 {
            return Amount::ZERO;
        }
        Amount::from_units(self.initial_subsidy.to_units() >> halvings)
            .expect("a halved subsidy stays in range")
    }

    /// Difficulty of `bits` relative to the easiest target, for display.
    pub fn difficulty(&self, bits: CompactTarget) -> f64 {
        bits.to_target()
            .map(|target| target.difficulty_relative_to(self.pow_limit_target()))
            .unwrap_or(0.0)
    }
}

/// Nonces that make each genesis block meet its bits. `genesis_blocks_meet_their_bits`
/// checks them; `find_genesis_nonces` (ignored test) recomputes them.
const DEVNET_GENESIS_NONCE: u64 = 75_913;
const REGTEST_GENESIS_NONCE: u64 = 0;

fn genesis_block(bits: CompactTarget, nonce: u64, note: &str) -> Block {
    // The genesis coinbase has no outputs: nobody owns coins the chain did not mine.
    let coinbase =
        Transaction::new_coinbase(BlockHeight::GENESIS, note.as_bytes().to_vec(), vec![]);
    let merkle_root = compute_merkle_root(&[coinbase.compute_txid()]);
    Block {
        header: Header {
            version: Header::CURRENT_VERSION,
            prev_hash: BlockHash::ZERO,
            merkle_root,
            time_ms: GENESIS_TIME_MS,
            bits,
            nonce,
        },
        transactions: vec![coinbase],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pow::HeaderHasher;

    #[test]
    fn genesis_blocks_meet_their_bits() {
        for network in Network::ALL {
            let params = network.params();
            let genesis = params.genesis();
            let target = genesis.header.bits.to_target().expect("valid bits");
            assert!(
                target.is_met_by(params.genesis_hash()),
                "{network} genesis nonce is stale"
            );
            assert!(target <= params.pow_limit_target());
            assert_eq!(genesis.compute_merkle_root(), genesis.header.merkle_root);
        }
    }

    #[test]
    fn genesis_hashes_are_pinned() {
        assert_eq!(
            Network::Devnet.params().genesis_hash().to_string(),
            "00000e01fcd0dccf49f1f04379554944069ed3a1c43c4fd2cd4c5f9f2a9e9c9b"
        );
        assert_eq!(
            Network::Regtest.params().genesis_hash().to_string(),
            "324af3e3efb54b138f7c1a613ee1eda34e5a04b5670088bfe26b4fbb03e38bd0"
        );
    }

    #[test]
    #[ignore = "run by hand to recompute the genesis nonces after changing a genesis field"]
    fn find_genesis_nonces() {
        for network in Network::ALL {
            let genesis = network.params().genesis().header;
            let target = genesis.bits.to_target().expect("valid bits");
            let (nonce, hash) = HeaderHasher::new(&genesis)
                .search(target, 0, u64::MAX)
                .expect("a nonce exists");
            println!("{network}: nonce {nonce} hash {hash}");
        }
    }

    #[test]
    fn subsidy_halves_on_schedule() {
        let params = Network::Regtest.params();
        let fifty = Amount::from_coins(50).expect("in range");
        assert_eq!(params.subsidy(BlockHeight(0)), fifty);
        assert_eq!(params.subsidy(BlockHeight(149)), fifty);
        assert_eq!(
            params.subsidy(BlockHeight(150)).to_units(),
            fifty.to_units() / 2
        );
        assert_eq!(params.subsidy(BlockHeight(150 * 64)), Amount::ZERO);
        assert_eq!(params.subsidy(BlockHeight(u64::MAX)), Amount::ZERO);
    }

    #[test]
    fn network_names_round_trip() {
        for network in Network::ALL {
            assert_eq!(network.name().parse::<Network>(), Ok(network));
        }
        assert!("mainnet".parse::<Network>().is_err());
    }
}
