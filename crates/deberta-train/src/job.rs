//! A training run from files, as `deberta train --train FILE [--eval FILE]` sets it up: the
//! label set (from `--labels`, the config or the training file, written into the config), the
//! datasets, the model (a new classifier when the label count changed; random from the config
//! with `from_scratch`), the evaluator and the [`Trainer`].

use std::path::{Path, PathBuf};

use candle_core::Device;
use deberta::pretrained::load_config;
use deberta::HeadKind;
use deberta_tokenizer::Tokenizer;

use crate::batches::DatasetBatches;
use crate::data::{
    apply_label_set, label_set_from, load_jsonl, DataOptions, Dataset, LabelSet, Task,
};
use crate::evaluate::DatasetEvaluator;
use crate::model_load::{load_model, ModelSpec};
use crate::options::TrainOptions;
use crate::trainer::Trainer;
use crate::Result;

/// What to train, from where, into where.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The checkpoint to start from (with `from_scratch`: only its `config.json`).
    pub model: PathBuf,
    /// The tokenizer directory (default: `model`).
    pub tokenizer: Option<PathBuf>,
    /// The head (default: the config's `architectures`).
    pub head: Option<HeadKind>,
    pub train: PathBuf,
    pub eval: Option<PathBuf>,
    pub output: PathBuf,
    pub data: DataOptions,
    pub options: TrainOptions,
    pub from_scratch: bool,
    /// Continue the run saved in this checkpoint (its weights and label set).
    pub resume: Option<PathBuf>,
}

/// What a job read, for reporting (bad lines are in each dataset's `skipped`).
#[derive(Debug, Clone)]
pub struct JobReport {
    pub task: Task,
    pub labels: Option<LabelSet>,
    pub train_examples: usize,
    pub train_features: usize,
    pub skipped: Vec<(PathBuf, crate::data::BadLine)>,
    pub eval_examples: Option<usize>,
}

impl TrainJob {
    /// A job with the Trainer's defaults.
    pub fn new(
        model: impl Into<PathBuf>,
        train: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
    ) -> Self {
        Self {
            model: model.into(),
            tokenizer: None,
            head: None,
            train: train.into(),
            eval: None,
            output: output.into(),
            data: DataOptions::default(),
            options: TrainOptions::default(),
            from_scratch: false,
            resume: None,
        }
    }

    /// Reads the data, loads the model and returns the trainer (resumed when asked).
    pub fn build(&self, device: &Device) -> Result<(Trainer, JobReport)> {
        let dir = self.resume.as_deref().unwrap_or(&self.model);
        let mut config = load_config(dir)?;
        let head = match self.head {
            Some(h) => h,
            None => HeadKind::from_config(&config)?,
        };
        let task = Task::from_head(head)?;
        let tokenizer = Tokenizer::from_dir(self.tokenizer.as_deref().unwrap_or(&self.model))?;
        // A resumed run keeps the label set its checkpoint saved.
        let labels = match &self.resume {
            Some(_) => None,
            None => label_set_from(&self.train, task, &config, &self.data)?,
        };
        if let Some(l) = &labels {
            apply_label_set(&mut config, l);
        }
        let read = |p: &Path| load_jsonl(p, task, &tokenizer, &config, &self.data);
        let train = read(&self.train)?;
        let eval = self.eval.as_deref().map(read).transpose()?;
        let report = self.report(task, labels.clone(), &train, eval.as_ref());
        let spec = ModelSpec {
            dir,
            head: Some(head),
            from_scratch: self.from_scratch && self.resume.is_none(),
            labels,
            seed: self.options.seed,
        };
        let model = load_model(&spec, device)?;
        let source = DatasetBatches::new(train, self.options.batch_size, self.options.seed)?;
        let mut trainer =
            Trainer::new(model, Box::new(source), self.options.clone(), &self.output)?
                .with_tokenizer_files(self.tokenizer.clone().unwrap_or_else(|| self.model.clone()));
        if let Some(eval) = eval {
            let evaluator =
                DatasetEvaluator::new(eval, self.options.batch_size, self.options.seed)?;
            trainer = trainer.with_evaluator(Box::new(evaluator));
        }
        if let Some(dir) = &self.resume {
            trainer = trainer.resume(dir)?;
        }
        Ok((trainer, report))
    }

    fn report(
        &self,
        task: Task,
        labels: Option<LabelSet>,
        train: &Dataset,
        eval: Option<&Dataset>,
    ) -> JobReport {
        let mut skipped: Vec<(PathBuf, crate::data::BadLine)> = train
            .skipped
            .iter()
            .map(|b| (self.train.clone(), b.clone()))
            .collect();
        if let (Some(path), Some(ds)) = (&self.eval, eval) {
            skipped.extend(ds.skipped.iter().map(|b| (path.clone(), b.clone())));
        }
        JobReport {
            task,
            labels: labels.or_else(|| train.labels.clone()),
            train_examples: train.num_examples(),
            train_features: train.len(),
            skipped,
            eval_examples: eval.map(Dataset::num_examples),
        }
    }
}
