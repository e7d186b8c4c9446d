//! The model's parameters: one trainable variable per transformers name, the single source of
//! truth for what the forward pass reads and what `save_pretrained` writes.
//!
//! Modules hold [`Param`]s: the variable itself (read in training mode, so gradients reach it)
//! and a detached view of the same storage (read in inference, so no autograd graph is kept).
//! Changing a value through [`Parameters::set`] (or an optimiser's in-place update followed by
//! [`Parameters::mark_changed`]) writes that shared storage and bumps a version number;
//! inference-only preparations (the fused CPU path's fused Q/K/V, folded position projections
//! and packed weights) record the version they were built from and are rebuilt when it moves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{Tensor, Var};

use crate::{Error, Result};

/// One parameter: the variable and a detached view of its storage.
#[derive(Clone, Debug)]
pub struct Param {
    var: Var,
    value: Tensor,
}

impl Param {
    /// A parameter holding `tensor` (copied into a new variable).
    pub fn new(tensor: &Tensor) -> Result<Self> {
        let var = Var::from_tensor(tensor)?;
        let value = var.as_tensor().detach();
        Ok(Self { var, value })
    }

    /// The tensor a forward pass reads: the variable in training mode (gradients flow), else the
    /// detached view (same values, no graph).
    pub fn get(&self, train: bool) -> &Tensor {
        if train {
            self.var.as_tensor()
        } else {
            &self.value
        }
    }

    /// The current value, detached.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The variable (for optimisers and `backward`).
    pub fn var(&self) -> &Var {
        &self.var
    }
}

/// A shared counter of parameter changes.
#[derive(Clone, Debug, Default)]
pub struct ParamVersion(Arc<AtomicU64>);

impl ParamVersion {
    /// The number of changes so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Every parameter of a model by its transformers (save) name, with the version counter its
/// derived caches watch.
#[derive(Clone, Debug, Default)]
pub struct Parameters {
    params: BTreeMap<String, Param>,
    version: ParamVersion,
}

impl Parameters {
    pub(crate) fn new(params: BTreeMap<String, Param>, version: ParamVersion) -> Self {
        Self { params, version }
    }

    /// The parameter saved under `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }

    /// Every parameter, by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Replaces the value of `name` in place (same shape; converted to the parameter's dtype
    /// and device). The forward pass and `save_pretrained` see the new value.
    pub fn set(&self, name: &str, value: &Tensor) -> Result<()> {
        let param = self
            .params
            .get(name)
            .ok_or_else(|| Error::input(format!("no parameter named `{name}`")))?;
        let current = param.value();
        if value.dims() != current.dims() {
            return Err(Error::WeightShape {
                name: name.to_string(),
                expected: current.dims().to_vec(),
                got: value.dims().to_vec(),
            });
        }
        let value = value
            .to_device(current.device())?
            .to_dtype(current.dtype())?
            .contiguous()?;
        // A copy, so a value derived from this parameter's own storage can be written back.
        param.var.set(&value.copy()?)?;
        self.mark_changed();
        Ok(())
    }

    /// Records that variables were updated in place (by an optimiser), so derived caches are
    /// rebuilt before the next forward.
    pub fn mark_changed(&self) {
        self.version.bump();
    }

    /// The counter derived caches compare against.
    pub fn version(&self) -> &ParamVersion {
        &self.version
    }

    /// The current values, detached, by name (what `save_pretrained` writes).
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|(k, p)| (k.clone(), p.value().clone()))
            .collect()
    }
}

/// A value computed from parameters for inference only, rebuilt when they change.
pub(crate) struct Derived<T> {
    slot: std::sync::Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Self {
            slot: std::sync::Mutex::new(None),
        }
    }
}

impl<T> Derived<T> {
    /// The value for `version`, built by `build` when missing or stale.
    pub fn get_or_build(&self, version: u64, build: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let mut slot = self
            .slot
            .lock()
            .map_err(|_| Error::internal("a derived-weights cache lock was poisoned"))?;
        if let Some((built, value)) = slot.as_ref() {
            if *built == version {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(build()?);
        *slot = Some((version, value.clone()));
        Ok(value)
    }

    /// The value built last, whatever its version (reports).
    pub fn peek(&self) -> Result<Option<Arc<T>>> {
        let slot = self
            .slot
            .lock()
            .map_err(|_| Error::internal("a derived-weights cache lock was poisoned"))?;
        Ok(slot.as_ref().map(|(_, value)| value.clone()))
    }

    /// Installs a value built elsewhere for `version`.
    pub fn install(&self, version: u64, value: T) -> Result<()> {
        let mut slot = self
            .slot
            .lock()
            .map_err(|_| Error::internal("a derived-weights cache lock was poisoned"))?;
        *slot = Some((version, Arc::new(value)));
        Ok(())
    }

    /// Drops the cached value.
    pub fn clear(&self) -> Result<()> {
        let mut slot = self
            .slot
            .lock()
            .map_err(|_| Error::internal("a derived-weights cache lock was poisoned"))?;
        *slot = None;
        Ok(())
    }
}
