"""Datasets, forget requests and loaders."""
from .builtin import BUILTIN, diabetes, digits, friedman, generated_classification, load_builtin
from .datasets import (ArrayDataset, as_dataset, features, fingerprint, groups_of, infer_task, resolve, standardise,
                       targets, task_of)
from .files import load_csv, load_image_folder, load_npz
from .images import fashion_mnist, load_cifar_binary, load_idx
from .forget import ForgetRequest, Split, split_forget, train_test_split

__all__ = ["ArrayDataset", "as_dataset", "infer_task", "resolve", "features", "targets", "task_of", "groups_of",
           "fingerprint", "standardise", "split_forget", "Split", "ForgetRequest", "train_test_split", "load_npz",
           "load_csv", "load_image_folder", "load_idx", "fashion_mnist", "load_cifar_binary", "digits", "diabetes",
           "friedman", "generated_classification", "load_builtin", "BUILTIN"]
