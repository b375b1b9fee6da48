"""Datasets, forget requests and loaders."""
from .authors import authors
from .builtin import BUILTIN, diabetes, digits, friedman, generated_classification, load_builtin
from .datasets import (ArrayDataset, StreamedDataset, as_dataset, features, fingerprint, first_rows, groups_of,
                       infer_task, is_streamed, resolve, standardise, streamed, targets, task_of)
from .generative import for_generation
from .files import load_csv, load_image_folder, load_npy, load_npz
from .images import fashion_mnist, load_cifar_binary, load_idx
from .forget import ForgetRequest, Split, split_forget, train_test_split
from .text import TextDataset, load_jsonl, load_text_csv, with_answers

__all__ = ["ArrayDataset", "as_dataset", "infer_task", "resolve", "features", "targets", "task_of", "groups_of",
           "fingerprint", "standardise", "StreamedDataset", "streamed", "is_streamed", "first_rows", "load_npy",
           "split_forget", "Split", "ForgetRequest", "train_test_split", "load_npz",
           "load_csv", "load_image_folder", "load_idx", "fashion_mnist", "load_cifar_binary", "digits", "diabetes",
           "friedman", "generated_classification", "load_builtin", "BUILTIN", "TextDataset", "load_jsonl",
           "load_text_csv", "with_answers", "authors", "for_generation"]
